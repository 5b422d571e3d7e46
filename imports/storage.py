"""Reading a stored export from whatever Django storage holds it. On the local filesystem that
is the file itself; in S3-compatible object storage it is the object read with ranged GETs — a
seekable stream (a ZIP's directory sits at its end), never a temporary copy of the whole
upload, whatever its size."""
import functools
import io

from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, ReadTimeoutError)
from django.core.files.storage import default_storage

from operations.dependencies import register_label
from operations.errors import TransientError, register_message

BLOCK = 1024 * 1024  # bytes asked for in one ranged GET

# The dependency of everything that reads stored exports: when object storage is away, the
# passes wait behind its gate (and resume from their checkpoint when it is back).
STORAGE = "storage"
register_label(STORAGE, lambda rest: "the file storage")
register_message("storage_unavailable", "The file storage could not be reached.",
                 "Nothing: this continues by itself when the storage is back.")
AWAY = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


def storage_dependency(input: dict) -> str:
    return STORAGE


def through_storage(handler):
    """A handler that reads stored exports: object storage that is away (refused, timed out,
    dropped, or answering 502/503/504) is a transient `storage_unavailable` that the storage
    gate counts, not a damaged export."""

    @functools.wraps(handler)
    def reading(context):
        try:
            return handler(context)
        except AWAY as exc:
            raise TransientError("storage_unavailable", type(exc).__name__,
                                 dependency_down=True) from None
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status in (502, 503, 504):
                raise TransientError("storage_unavailable", f"HTTP {status}",
                                     dependency_down=True) from None
            raise

    return reading


def in_object_storage(storage=None) -> bool:
    return hasattr(storage or default_storage, "bucket")


def open_stored(key: str, storage=None):
    """The stored object as a binary, seekable file; close it when done."""
    storage = storage or default_storage
    if in_object_storage(storage):
        raw = RangedObject(storage.bucket.Object(storage._normalize_name(key)))
        return io.BufferedReader(raw, buffer_size=BLOCK)
    return storage.open(key, "rb")


class RangedObject(io.RawIOBase):
    """An S3 object as a raw file: each read is one ranged GET from the current position."""

    def __init__(self, obj):
        self.obj = obj
        self.size = obj.content_length  # one HEAD
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0
        end = min(self.position + len(buffer), self.size) - 1
        data = self.obj.get(Range=f"bytes={self.position}-{end}")["Body"].read()
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

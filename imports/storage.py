"""Reading a stored export from whatever Django storage holds it. On the local filesystem that
is the file itself; in S3-compatible object storage it is the object read with ranged GETs — a
seekable stream (a ZIP's directory sits at its end), never a temporary copy of the whole
upload, whatever its size."""
import io

from django.core.files.storage import default_storage

BLOCK = 1024 * 1024  # bytes asked for in one ranged GET


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

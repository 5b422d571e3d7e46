"""Reading ChatGPT and Claude exports: validate an upload, then stream its conversations.

Nothing here extracts a ZIP to disk or reads an export whole into memory: members are read as
streams, JSON is parsed item by item with ijson's C backend, and zip-bomb limits are checked
against the bytes actually inflated, never against what the headers claim.
"""
import hashlib
import json
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import ijson
from django.conf import settings

from imports.storage import open_stored
from operations.refusals import declare

try:
    # The pure-Python backend is ~30x slower; running without the C one would be a silent
    # regression, so refuse to start instead.
    ijson_c = ijson.get_backend("yajl2_c")
except ImportError as exc:  # pragma: no cover - depends on the installed wheel
    raise ImportError("ijson's C backend (yajl2_c) is required: pip install ijson "
                      "from a wheel that includes it") from exc

CHUNK = 1024 * 1024
NESTED_ARCHIVES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz")


class ExportRejected(Exception):
    """An upload we refuse, with a stable code and a message a person can act on."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# What an upload can be refused with (the API answers each as a problem with this code).
REFUSALS = (
    declare("empty_file", 400, "The file is empty."),
    declare("unsupported_file", 400, "This is not a ZIP or JSON file."),
    declare("file_too_large", 413, "The file is larger than 1024 MB."),
    declare("damaged_zip", 400, "The ZIP file is damaged."),
    declare("no_conversations", 400, "There are no conversations in it."),
    declare("several_conversations", 400, "The ZIP holds more than one conversations.json."),
    declare("unsafe_zip", 400, "The ZIP holds unsafe names."),
    declare("encrypted_zip", 400, "The ZIP is encrypted."),
    declare("zip_bomb", 400, "The ZIP would inflate far beyond its size."),
    declare("malformed_json", 400, "The JSON is malformed."),
    declare("empty_export", 400, "The export holds no conversations."),
    declare("not_an_export", 400, "This JSON is not a ChatGPT or Claude export."),
)


@dataclass
class ExportInfo:
    file_type: str  # "zip" | "json"
    source: str  # "chatgpt" | "claude"
    size: int
    sha256: str
    member: str = ""  # the conversations.json inside a ZIP


def limits() -> dict:
    return settings.IMPORTS


# --- validation of an upload -----------------------------------------------------------------

def inspect_upload(upload) -> ExportInfo:
    """Validate an uploaded file (any seekable binary file object); raise ExportRejected."""
    size, sha256 = _size_and_hash(upload)
    if size > limits()["MAX_UPLOAD_BYTES"]:
        raise too_large()
    if size == 0:
        raise ExportRejected("empty_file", "The file is empty. Upload your export's ZIP file "
                                           "or its conversations.json.")
    upload.seek(0)
    head = upload.read(8)
    upload.seek(0)
    if head.startswith(b"PK"):
        member = _check_zip(upload)
        with zipfile.ZipFile(upload) as archive, archive.open(member) as stream:
            source = _check_json_shape(_InflateGuard(stream, archive.getinfo(member)))
        return ExportInfo("zip", source, size, sha256, member)
    if head.lstrip()[:1] in (b"[", b"{") or head.startswith(b"\xef\xbb\xbf"):
        source = _check_json_shape(upload)
        return ExportInfo("json", source, size, sha256)
    raise ExportRejected("unsupported_file", "This is not a ZIP or JSON file. Upload the ZIP "
                                             "file from your ChatGPT or Claude data export.")


def too_large() -> ExportRejected:
    cap_mb = limits()["MAX_UPLOAD_BYTES"] // (1024 * 1024)
    return ExportRejected("file_too_large", f"The file is larger than {cap_mb} MB. Upload the "
                                            "export ZIP rather than its extracted folder.", 413)


def _size_and_hash(upload) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    upload.seek(0)
    while chunk := upload.read(CHUNK):
        size += len(chunk)
        digest.update(chunk)
        if size > limits()["MAX_UPLOAD_BYTES"]:
            raise too_large()
    return size, digest.hexdigest()


def _check_zip(upload) -> str:
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, EOFError, OSError):
        raise ExportRejected("damaged_zip", "The ZIP file is damaged or incomplete. Download "
                                            "the export again and upload the new file.") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits()["MAX_MEMBERS"]:
            raise _bomb(f"it holds {len(members)} files")
        for info in members:
            _check_member(info)
        found = [i.filename for i in members
                 if i.filename.rsplit("/", 1)[-1] == "conversations.json" and not i.is_dir()]
    if not found:
        raise ExportRejected("no_conversations", "The ZIP holds no conversations.json. Upload "
                                                 "the ZIP exactly as ChatGPT or Claude sent it.")
    if len(found) > 1:
        raise ExportRejected("several_conversations", "The ZIP holds more than one "
                                                      "conversations.json. Upload one export at a time.")
    return found[0]


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise ExportRejected("unsafe_zip", "The ZIP contains a file with an unsafe path. Upload "
                                           "the export exactly as it was downloaded.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ExportRejected("unsafe_zip", "The ZIP contains a symbolic link. Upload the export "
                                           "exactly as it was downloaded.")
    if info.flag_bits & 0x1:
        raise ExportRejected("encrypted_zip", "The ZIP is password-protected. Export your data "
                                              "again and upload the ZIP without a password.")
    if name.lower().endswith(NESTED_ARCHIVES):
        raise _bomb("it contains another archive")


def _bomb(why: str) -> ExportRejected:
    return ExportRejected("zip_bomb", f"The ZIP was refused because {why}, which exports never "
                                      "do. Upload the export exactly as it was downloaded.")


class _InflateGuard:
    """A read-through stream that counts the bytes actually inflated from a ZIP member and
    stops at the size and ratio limits."""

    def __init__(self, stream, info: zipfile.ZipInfo):
        self.stream, self.inflated = stream, 0
        compressed = max(info.compress_size, 1)
        self.cap = min(limits()["MAX_INFLATED_BYTES"],
                       compressed * limits()["MAX_RATIO"] + 1024 * 1024)

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson probes with read(0) for the stream's type
        data = self.stream.read(size if size > 0 else CHUNK)
        self.inflated += len(data)
        if self.inflated > self.cap:
            raise _bomb("it inflates far beyond its size")
        return data


class _Prefixed:
    """A stream with some bytes already read from its start put back in front."""

    def __init__(self, head: bytes, stream):
        self.head, self.stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if self.head and size != 0:
            data, self.head = self.head, b""
            return data
        return self.stream.read(size)


def _check_json_shape(stream) -> str:
    """Stream the whole document: it must be a non-empty array of ChatGPT or Claude
    conversations. Returns the source."""
    source, count = None, 0
    try:
        head = stream.read(4096)
        if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            raise _not_an_export()
        for conversation in ijson_c.items(_Prefixed(head, stream), "item", use_float=True):
            count += 1
            kind = detect_source(conversation)
            if kind is None:
                raise _not_an_export()
            source = source or kind
    except ijson.JSONError:
        raise ExportRejected("malformed_json", "The conversations file is not valid JSON (it may "
                                               "be cut short). Download the export again.") from None
    except (zipfile.BadZipFile, EOFError, OSError):
        raise ExportRejected("damaged_zip", "The ZIP file is damaged or incomplete. Download "
                                            "the export again and upload the new file.") from None
    if count == 0:
        raise ExportRejected("empty_export", "The export has no conversations in it. Check that "
                                             "you exported the right account.")
    return source


def _not_an_export() -> ExportRejected:
    return ExportRejected("not_an_export", "This JSON is not a ChatGPT or Claude conversations "
                                           "export. Upload conversations.json from the export.")


def detect_source(item) -> str | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("mapping"), dict):
        return "chatgpt"
    if isinstance(item.get("chat_messages"), list):
        return "claude"
    return None


# --- reading a stored export -----------------------------------------------------------------

@contextmanager
def open_conversations(storage_key: str, file_type: str, member: str = ""):
    """The stored export's conversations.json as a binary stream (read from storage, in
    object storage with ranged reads)."""
    with open_stored(storage_key) as stored:
        if file_type != "zip":
            yield stored
            return
        with zipfile.ZipFile(stored) as archive, archive.open(member) as stream:
            yield _InflateGuard(stream, archive.getinfo(member))


class ResumeMismatch(Exception):
    """The stored offset does not point at a conversation: resume by counting instead."""


class CountingReader:
    """Counts the bytes a parser has pulled and keeps the most recent ones, so the exact end of
    each conversation can be checked against the bytes themselves."""

    WINDOW = 256 * 1024

    def __init__(self, stream, position: int = 0):
        self.stream, self.position = stream, position
        self.window, self.window_start = b"", position

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            keep = self.window[-self.WINDOW:]
            self.window_start = self.position - len(keep)
            self.window = keep + data
            self.position += len(data)
        return data

    def bytes_at(self, offset: int, length: int) -> bytes | None:
        start = offset - self.window_start
        if start < 0 or start + length > len(self.window):
            return None
        return self.window[start:start + length]


def _skip_to(stream, offset: int):
    """Go to `offset`: a seek where the stream can (a file, an object read with ranged GETs),
    otherwise read and drop the bytes before it (a ZIP member: inflating is cheap, parsing is
    what a resume must not repeat)."""
    remaining = offset
    if callable(getattr(stream, "seekable", None)) and stream.seekable():
        stream.seek(offset)
        remaining = 0
    while remaining > 0:
        data = stream.read(min(CHUNK, remaining))
        if not data:
            raise ResumeMismatch("the export is shorter than the checkpoint's offset")
        remaining -= len(data)
    head = stream.read(64)
    if not head.lstrip(b" \t\r\n")[:1] == b"{":
        raise ResumeMismatch("no conversation starts at the checkpoint's offset")
    return _Prefixed(b"[" + head, stream)


class Conversations:
    """The conversations of an export, one at a time, each with its approximate size in
    bytes; `offset_after(item)` tells the exact byte offset where the next one starts.

    ChatGPT writes its export with Python's json.dumps defaults and ends each conversation
    with its unique id, so the re-encoded tail of a conversation is found exactly once in the
    bytes just read; anything else (another writer, a lookalike) gives no offset, and a resume
    then counts conversations instead.
    """

    TAIL = 96

    def __init__(self, stream, resume_offset: int = 0):
        self.resume_offset = resume_offset
        if resume_offset:
            stream = _skip_to(stream, resume_offset)
        self.reader = CountingReader(stream, position=max(resume_offset - 1, 0))

    def __iter__(self) -> Iterator[tuple[dict, int]]:
        items = ijson_c.items(self.reader, "item", use_float=True)
        last = self.reader.position
        for item in _checked_first(items) if self.resume_offset else items:
            yield item, self.reader.position - last
            last = self.reader.position

    def offset_after(self, item: dict) -> int | None:
        tail = json.dumps(item).encode()[-self.TAIL:]
        window = self.reader.window
        found = window.rfind(tail + b", {")
        if found < 0 or window.find(tail + b", {") != found or len(tail) < self.TAIL:
            return None
        return self.reader.window_start + found + len(tail) + 2


def _checked_first(items):
    """After a resume, the first item must parse and be a conversation."""
    try:
        first = next(items, None)
    except ijson.JSONError:
        raise ResumeMismatch("the checkpoint's offset is not a conversation boundary") from None
    if first is None or detect_source(first) is None:
        raise ResumeMismatch("the checkpoint's offset is not a conversation boundary")
    yield first
    yield from items


def iter_raw(stream) -> Iterator[tuple[dict, int]]:
    """Each top-level conversation with the approximate number of bytes it took."""
    return iter(Conversations(stream))


# --- one conversation as the product sees it -------------------------------------------------

@dataclass
class Conversation:
    id: str
    title: str
    created: datetime | None
    messages: list[tuple[str, str]] = field(default_factory=list)  # (role, text) as seen
    custom_instructions: str = ""
    do_not_remember: bool = False
    unknown_content: dict = field(default_factory=dict)

    @property
    def user_text(self) -> str:
        """What the person wrote, message by message (each capped: pasted logs say little
        about them)."""
        return "\n".join(text[:20000] for role, text in self.messages if role == "user")


def to_datetime(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def normalize(item: dict) -> Conversation:
    if detect_source(item) == "claude":
        return _from_claude(item)
    return _from_chatgpt(item)


TEXT_TYPES = {"text", "code", "multimodal_text"}
IGNORED_TYPES = {"tether_browsing_display", "tether_quote", "system_error", "execution_output",
                 "user_editable_context", "model_editable_context", "thoughts",
                 "reasoning_recap"}


def active_branch(mapping: dict, current_node: str | None) -> list[dict]:
    """The messages the user actually saw: from `current_node` back through `parent` to the
    root (regenerated answers are siblings, and the last child is not always the one shown)."""
    if not current_node or current_node not in mapping:
        # Old exports lack current_node: follow the last child from the root.
        roots = [k for k, n in mapping.items() if not n.get("parent")]
        node = roots[0] if roots else None
        path = []
        while node is not None and node in mapping:
            path.append(mapping[node])
            children = mapping[node].get("children") or []
            node = children[-1] if children else None
        return [n["message"] for n in path if n.get("message")]
    path, node, seen = [], current_node, set()
    while node and node in mapping and node not in seen:
        seen.add(node)
        path.append(mapping[node])
        node = mapping[node].get("parent")
    return [n["message"] for n in reversed(path) if n.get("message")]


def _from_chatgpt(item: dict) -> Conversation:
    conversation = Conversation(
        id=str(item.get("id") or item.get("conversation_id") or ""),
        title=str(item.get("title") or "Untitled"), created=to_datetime(item.get("create_time")),
        do_not_remember=bool(item.get("is_do_not_remember")))
    for message in active_branch(item.get("mapping") or {}, item.get("current_node")):
        content = message.get("content") or {}
        kind = content.get("content_type", "")
        metadata = message.get("metadata") or {}
        if kind == "user_editable_context":
            conversation.custom_instructions = _custom_instructions(content)
            continue
        role = (message.get("author") or {}).get("role", "")
        if role not in ("user", "assistant") or metadata.get("is_visually_hidden_from_conversation"):
            continue  # system and tool messages, and hidden ones, were never shown as chat
        if metadata.get("is_do_not_remember"):
            continue
        if kind in TEXT_TYPES:
            text = _text_of(content)
            if text:
                conversation.messages.append((role, text))
        elif kind not in IGNORED_TYPES:
            conversation.unknown_content[kind] = conversation.unknown_content.get(kind, 0) + 1
    return conversation


def _text_of(content: dict) -> str:
    if content.get("content_type") == "code":
        return str(content.get("text") or "")
    parts = content.get("parts") or []
    return "\n".join(part for part in parts if isinstance(part, str)).strip()


def _custom_instructions(content: dict) -> str:
    pieces = [content.get("user_profile") or "", content.get("user_instructions") or ""]
    return "\n".join(p.strip() for p in pieces if p and p.strip())


def _from_claude(item: dict) -> Conversation:
    conversation = Conversation(id=str(item.get("uuid") or ""),
                                title=str(item.get("name") or "Untitled"),
                                created=to_datetime(item.get("created_at")))
    for message in item.get("chat_messages") or []:
        role = {"human": "user", "assistant": "assistant"}.get(message.get("sender"))
        text = message.get("text") or "\n".join(
            part.get("text", "") for part in message.get("content") or []
            if isinstance(part, dict) and part.get("type") == "text")
        if role and text and text.strip():
            conversation.messages.append((role, text.strip()))
    return conversation

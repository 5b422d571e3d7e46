"""Building exports for tests: the real sample, synthetic ones, ZIPs of any shape."""
import io
import json
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from bench.export_generator import write_export

SAMPLE = (Path(__file__).resolve().parent.parent / "imports" / "sample"
          / "chatgpt_real_2023-06_pkuppens_subset.conversations.json")


def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


def synthetic(count: int, seed: int = 7, turn_bytes: int = 600) -> bytes:
    out = io.BytesIO()
    write_export(out, count=count, seed=seed, turn_bytes=turn_bytes)
    return out.getvalue()


def zip_of(members: dict, encrypted: bool = False, symlinks=()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            archive.writestr(info, data)
    data = bytearray(out.getvalue())
    if encrypted:
        # zipfile cannot encrypt; set the "encrypted" flag in every local and central header.
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (at := data.find(signature, start)) != -1:
                data[at + offset] |= 0x1
                start = at + 4
    return bytes(data)


def upload_file(data: bytes, name="conversations.json"):
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def conversation(mapping, current_node, **extra):
    return {"id": "c1", "title": "Test", "create_time": 1680000000.0, "mapping": mapping,
            "current_node": current_node, **extra}


def node(node_id, parent, role, text, children=(), content_type="text", **metadata):
    content = ({"content_type": content_type, "parts": [text]} if content_type != "code"
               else {"content_type": "code", "text": text})
    return {"id": node_id, "parent": parent, "children": list(children), "message": {
        "id": node_id, "author": {"role": role}, "content": content, "metadata": metadata}}


def as_json(conversations) -> bytes:
    return json.dumps(conversations).encode()

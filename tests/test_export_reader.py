"""Reading exports: what the user saw, what they asked not to be remembered, what is unknown."""
import io
import json

import pytest

from imports.export_reader import (Conversations, ExportRejected, ResumeMismatch, inspect_upload,
                                   iter_raw, normalize)
from imports.memory import facts_from
from tests.imports_helpers import as_json, conversation, node, sample_bytes, synthetic, zip_of


def test_the_real_sample_is_a_chatgpt_export_of_43_conversations():
    info = inspect_upload(io.BytesIO(sample_bytes()))
    assert (info.file_type, info.source) == ("json", "chatgpt")
    assert info.sha256 == "6fc43a72c9903216052b8608ad2aafdc8a131db3e21f81ceeb918eefeda59c64"
    assert sum(1 for _ in iter_raw(io.BytesIO(sample_bytes()))) == 43


def test_the_active_branch_follows_current_node_not_the_last_child():
    mapping = {
        "root": {"id": "root", "parent": None, "children": ["u1"], "message": None},
        "u1": node("u1", "root", "user", "Hello", children=["a1", "a2"]),
        "a1": node("a1", "u1", "assistant", "The answer the user kept"),
        "a2": node("a2", "u1", "assistant", "A regenerated answer they left"),
    }
    messages = normalize(conversation(mapping, "a1")).messages
    assert messages == [("user", "Hello"), ("assistant", "The answer the user kept")]


def test_system_tool_and_hidden_messages_are_skipped():
    mapping = {
        "s": node("s", None, "system", "You are ChatGPT", children=["h"]),
        "h": node("h", "s", "user", "hidden context", children=["u"],
                  is_visually_hidden_from_conversation=True),
        "u": node("u", "h", "user", "I live in Utrecht.", children=["t"]),
        "t": node("t", "u", "tool", "search results", children=["a"]),
        "a": node("a", "t", "assistant", "Nice city."),
    }
    assert [role for role, _ in normalize(conversation(mapping, "a")).messages] == [
        "user", "assistant"]


def test_is_do_not_remember_is_honoured_for_messages_and_conversations():
    mapping = {
        "u": node("u", None, "user", "I work at Secretcorp.", children=["v"],
                  is_do_not_remember=True),
        "v": node("v", "u", "user", "I live in Lisbon."),
    }
    facts = facts_from(normalize(conversation(mapping, "v")))
    assert [f.text for f in facts] == ["Lisbon"]
    assert facts_from(normalize(conversation(mapping, "v", is_do_not_remember=True))) == []


def test_unknown_content_types_are_counted_not_fatal():
    mapping = {"u": node("u", None, "user", "hi", children=["x"]),
               "x": node("x", "u", "assistant", "?", content_type="future_widget")}
    assert normalize(conversation(mapping, "x")).unknown_content == {"future_widget": 1}


def test_a_claude_export_is_recognised_and_read():
    claude = [{"uuid": "k1", "name": "Trip", "created_at": "2024-05-01T10:00:00Z",
               "chat_messages": [{"sender": "human", "text": "I live in Osaka."},
                                 {"sender": "assistant", "text": "Lovely."}]}]
    assert inspect_upload(io.BytesIO(as_json(claude))).source == "claude"
    facts = facts_from(normalize(claude[0]))
    assert [(f.category, f.text) for f in facts] == [("place", "Osaka")]


def test_synthetic_exports_stream_with_all_content_types():
    raw = synthetic(60)
    items = [item for item, _ in iter_raw(io.BytesIO(raw))]
    assert len(items) == 60 and len(json.loads(raw)) == 60
    kinds = {m["message"]["content"]["content_type"] for item in items
             for m in item["mapping"].values() if m.get("message")}
    assert {"text", "code", "multimodal_text", "user_editable_context"} <= kinds


def test_a_zip_is_recognised_by_content_whatever_its_name():
    data = zip_of({"export/conversations.json": sample_bytes()})
    info = inspect_upload(io.BytesIO(data))
    assert (info.file_type, info.member) == ("zip", "export/conversations.json")


def test_a_zip_holding_something_else_under_the_right_name_is_refused_by_content():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    with pytest.raises(ExportRejected) as refused:
        inspect_upload(io.BytesIO(zip_of({"conversations.json": png})))
    assert refused.value.code == "not_an_export"


def test_exact_offsets_let_a_read_resume_at_any_conversation():
    raw = sample_bytes()
    conversations = Conversations(io.BytesIO(raw))
    ids, offsets = [], []
    for item, _ in conversations:
        ids.append(item["id"])
        offsets.append(conversations.offset_after(item))
    assert all(offsets[:-1]) and offsets[-1] is None  # every boundary known; none after the last
    resumed = [item["id"] for item, _ in Conversations(io.BytesIO(raw), resume_offset=offsets[29])]
    assert resumed == ids[30:]


def test_no_offset_when_the_file_is_not_written_like_chatgpt_writes():
    pretty = json.dumps(json.loads(sample_bytes()), indent=2).encode()
    conversations = Conversations(io.BytesIO(pretty))
    assert all(conversations.offset_after(item) is None for item, _ in conversations)


def test_resuming_at_an_offset_that_is_not_a_boundary_is_refused():
    with pytest.raises(ResumeMismatch):
        list(Conversations(io.BytesIO(sample_bytes()), resume_offset=1000))

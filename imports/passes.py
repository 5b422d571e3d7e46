"""Accepting an export, and the two passes over it: the quick pass (counts, first profile) and
the resumable full pass (memory facts, checkpointed with the facts they cover)."""
import hashlib
import time
import uuid

import ijson
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from imports.export_reader import (Conversations, ExportRejected, ResumeMismatch,
                                   inspect_upload, iter_raw, normalize, open_conversations,
                                   to_datetime)
from imports.memory import aggregate_facts, facts_from, render_memory, tally
from imports.models import MemoryFact, Profile
from imports.storage import AWAY as storage_away
from imports.storage import open_stored, storage_dependency, through_storage
from operations import events
from operations.errors import LeaseLost, PermanentError, TransientError
from operations.kinds import register
from operations.models import Status
from operations.retry_policy import RetryPolicy
from operations.services import submit

FULL_PASS_POLICY = RetryPolicy(max_attempts=5, base_delay=2.0, factor=2.0, max_delay=60.0,
                               max_crashes=3, time_limit=3 * 3600)
QUICK_PASS_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, time_limit=600)


# --- accepting an upload ---------------------------------------------------------------------

def accept_upload(user, upload, name: str = "", fault: dict | None = None) -> Profile:
    """Validate, store once under a random private name, and queue both passes. The previous
    export is replaced only now that the new one validated. Raises ExportRejected."""
    info = inspect_upload(upload)
    upload.seek(0)
    key = default_storage.save(f"exports/{uuid.uuid4().hex}", File(upload))
    try:
        with transaction.atomic():
            profile, _ = Profile.objects.select_for_update().get_or_create(user=user)
            old_key = profile.export_key
            for operation in (profile.quick_pass_operation, profile.full_pass):
                if operation is not None:
                    operation.cancel()  # a waiting pass of the old export has nothing to do
            profile.export_key, profile.export_member = key, info.member
            profile.export_type, profile.export_source = info.file_type, info.source
            profile.export_size, profile.export_sha256 = info.size, info.sha256
            profile.export_name, profile.uploaded_at = name[:255], timezone.now()
            profile.conversation_count = profile.message_count = None
            profile.memory_markdown = ""
            source = {"profile_id": profile.pk, "storage_key": key, "sha256": info.sha256,
                      "file_type": info.file_type, "member": info.member}
            if fault:
                source["fault"] = fault  # drills and the demo, see _injected_fault
            profile.quick_pass_operation = submit("imports.quick_pass", user, source)
            profile.full_pass_operation = submit("imports.full_pass", user, source)
            profile.save()
    except BaseException:
        default_storage.delete(key)
        raise
    if old_key and old_key != key:
        transaction.on_commit(lambda: default_storage.delete(old_key))
    return profile


def stored_export_intact(input: dict, *, hash_bytes: bool = True) -> bool:
    """Preflight for a retry: the stored file (or object) exists and is the current export;
    for a manual retry also that it has the size recorded at upload and its bytes still hash to
    the recorded sha256 (each attempt checks only the first two: a damaged file found while
    reading is explained as such). Storage that cannot be reached cannot say the file is gone:
    the retry is let through, and waits for the storage like any pass."""
    try:
        return _intact(input, hash_bytes)
    except storage_away:
        return True


def _intact(input: dict, hash_bytes: bool) -> bool:
    key, sha256 = input.get("storage_key", ""), input.get("sha256", "")
    if not key or not default_storage.exists(key):
        return False
    size = Profile.objects.filter(pk=input.get("profile_id"), export_sha256=sha256).values_list(
        "export_size", flat=True).first()
    if size is None:
        return False
    if not hash_bytes:
        return True
    if default_storage.size(key) != size:
        return False
    digest = hashlib.sha256()
    with open_stored(key) as stored:
        while chunk := stored.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def _profile(context) -> Profile:
    if not stored_export_intact(context.input, hash_bytes=False):
        raise PermanentError("input_missing", "stored export missing or replaced")
    return Profile.objects.get(pk=context.input["profile_id"])


def _open(input: dict):
    return open_conversations(input["storage_key"], input["file_type"], input.get("member", ""))


def _damaged(exc) -> PermanentError:
    if isinstance(exc, ExportRejected):
        return PermanentError("export_damaged", f"{exc.code}: {exc.message}")
    return PermanentError("export_damaged", f"{type(exc).__name__}: {exc}")


# --- the quick pass --------------------------------------------------------------------------

@register("imports.quick_pass", policy=QUICK_PASS_POLICY, label="Quick pass",
          input_available=stored_export_intact, dependency=storage_dependency)
@through_storage
def quick_pass(context):
    """Counts, date range, titles, custom instructions and a first summary, in seconds."""
    profile, opened = _profile(context), _open(context.input)
    count = messages = 0
    first = last = None
    titles, instructions = [], ""
    try:
        with opened as stream:
            for item, _ in iter_raw(stream):
                count += 1
                created = to_datetime(item.get("create_time") or item.get("created_at"))
                if created:
                    first = min(first or created, created)
                    last = max(last or created, created)
                messages += _message_count(item)
                if len(titles) < 20:
                    titles.append(str(item.get("title") or item.get("name") or "Untitled"))
                if not instructions and _mentions_instructions(item):
                    instructions = normalize(item).custom_instructions
                context.heartbeat(done=count)
                if (context.input.get("fault") or {}).get("quick_pace"):
                    time.sleep(context.input["fault"]["quick_pace"])  # drills: a slow count
    except (ijson.JSONError, ExportRejected, EOFError, OSError) as exc:
        raise _damaged(exc) from None
    summary = _summary(count, messages, first, last, titles)
    Profile.objects.filter(pk=profile.pk).update(
        conversation_count=count, message_count=messages, first_conversation_at=first,
        last_conversation_at=last, titles=titles, custom_instructions=instructions,
        summary=summary)
    return {"conversations": count, "messages": messages}


def _message_count(item) -> int:
    if isinstance(item.get("mapping"), dict):
        return sum(1 for node in item["mapping"].values() if node.get("message"))
    return len(item.get("chat_messages") or [])


def _mentions_instructions(item) -> bool:
    return any(((node.get("message") or {}).get("content") or {}).get("content_type")
               == "user_editable_context" for node in (item.get("mapping") or {}).values())


def _summary(count, messages, first, last, titles) -> str:
    if not count:
        return ""
    span = (f" between {first:%B %Y} and {last:%B %Y}" if first and last else "")
    recent = ", ".join(f"“{t}”" for t in titles[:3])
    return (f"{count} conversations ({messages} messages){span}. "
            f"Most recent: {recent}.")


# --- the full pass ---------------------------------------------------------------------------

def _announce(operation) -> None:
    """import.full_pass.completed / .failed, in the follow-up of the pass's final state."""
    type = ("import.full_pass.completed" if operation.status == Status.COMPLETED
            else "import.full_pass.failed")
    events.emit(type, operation.owner_id,
                {"import": {"profile_id": operation.input.get("profile_id"),
                            "sha256": operation.input.get("sha256", "")},
                 "operation": events.operation_data(operation)},
                key=f"{type}:{operation.pk}")


@register("imports.full_pass", policy=FULL_PASS_POLICY, label="Deep memory (full pass)",
          input_available=stored_export_intact, dependency=storage_dependency,
          on_success=_announce, on_failure=_announce)
@through_storage
def full_pass(context):
    """Stream every conversation, extract durable facts, write the MEMORY section. Resumes
    from the checkpoint, which is saved in the same transaction as the facts it covers."""
    profile, sha256 = _profile(context), context.input["sha256"]
    checkpoint = _resume_point(context.checkpoint, sha256)
    start = checkpoint["index"]
    checkpoint["resumed_from"] = start  # lets the page estimate this attempt's pace
    resumed_by = ("offset" if checkpoint.get("offset") else "count") if start else None
    try:
        _read_all(context, profile, checkpoint, use_offset=True)
    except ResumeMismatch:
        checkpoint["offset"] = None  # the offset cannot be trusted: count conversations instead
        resumed_by = "count"
        _read_all(context, profile, checkpoint, use_offset=False)
    batch = aggregate_facts(checkpoint["stats"])
    _save(context, profile, sha256, batch, checkpoint, checkpoint["index"])
    facts = profile.facts.filter(export_sha256=sha256)
    Profile.objects.filter(pk=profile.pk).update(memory_markdown=render_memory(facts))
    return {"conversations": checkpoint["index"], "facts": facts.count(),
            "skipped": checkpoint["skipped"], "unknown_content": checkpoint["unknown"],
            "resumed_from": start, "resumed_by": resumed_by}


def _read_all(context, profile, checkpoint, use_offset: bool) -> None:
    """Read from the checkpoint to the end, saving facts and checkpoint every few seconds.
    With a trusted byte offset the read starts right there; otherwise earlier conversations
    are parsed again and passed over."""
    input, sha256 = context.input, context.input["sha256"]
    offset = checkpoint.get("offset") if use_offset else None
    first_index = checkpoint["index"] if offset else 0
    total, every = profile.conversation_count, settings.IMPORTS["CHECKPOINT_SECONDS"]
    batch, last_save, done, conversations = [], time.monotonic(), None, None
    seen = set()  # facts already written by this attempt (the database dedupes the rest)
    try:
        with _open(input) as stream:
            conversations = Conversations(stream, resume_offset=offset or 0)
            for index, (item, size) in enumerate(conversations, first_index):
                if index < checkpoint["index"]:
                    continue  # done by an earlier attempt
                _injected_fault(context, index)
                batch += _read_one(item, size, checkpoint, seen)
                checkpoint["index"], done = index + 1, item
                # Where the next conversation starts is worked out only when it is saved.
                checkpoint["offset"] = None
                if time.monotonic() - last_save >= every:
                    checkpoint["offset"] = conversations.offset_after(done)
                    _save(context, profile, sha256, batch, checkpoint, total)
                    batch, last_save = [], time.monotonic()
    except (LeaseLost, ResumeMismatch):
        raise  # nothing to keep: another attempt owns it, or we start over by counting
    except Exception as exc:
        if done is not None and checkpoint["offset"] is None:
            checkpoint["offset"] = conversations.offset_after(done)
        _save_on_failure(context, profile, sha256, batch, checkpoint, total)
        if isinstance(exc, (ijson.JSONError, ExportRejected, EOFError, OSError)):
            raise _damaged(exc) from None
        raise
    _save(context, profile, sha256, batch, checkpoint, total)


def _resume_point(checkpoint, sha256) -> dict:
    if checkpoint and checkpoint.get("sha256") == sha256:
        return checkpoint
    return {"sha256": sha256, "index": 0, "offset": None, "stats": {}, "skipped": [],
            "unknown": {}}


def _read_one(item, size, checkpoint, seen: set) -> list:
    if size > settings.IMPORTS["MAX_CONVERSATION_BYTES"]:
        if len(checkpoint["skipped"]) < 100:
            checkpoint["skipped"].append({"title": str(item.get("title") or "")[:200],
                                          "bytes": size})
        return []
    conversation = normalize(item)
    for kind, n in conversation.unknown_content.items():
        checkpoint["unknown"][kind] = checkpoint["unknown"].get(kind, 0) + n
    tally(conversation, checkpoint["stats"])
    new = [fact for fact in facts_from(conversation) if fact.fingerprint not in seen]
    seen.update(fact.fingerprint for fact in new)
    return new


def _save(context, profile, sha256, facts, checkpoint, total) -> None:
    """Facts and the checkpoint that covers them, in one transaction. If the lease is gone,
    heartbeat raises and the facts roll back with it."""
    if total is None:
        # The full pass started before the quick pass counted the conversations: the total
        # (and so the progress bar and its estimate) appears as soon as the count is known.
        total = Profile.objects.filter(pk=profile.pk).values_list("conversation_count",
                                                                  flat=True).first()
    with transaction.atomic():
        MemoryFact.objects.bulk_create([
            MemoryFact(profile=profile, export_sha256=sha256, category=f.category,
                       text=f.text[:200], fingerprint=f.fingerprint,
                       conversation_id=f.conversation_id[:100],
                       conversation_title=f.conversation_title[:300]) for f in facts],
            ignore_conflicts=True)
        context.heartbeat(done=checkpoint["index"], total=total, checkpoint=checkpoint)


def _save_on_failure(context, *args) -> None:
    """Keep the conversations read before a failure, so a retry resumes right there."""
    try:
        _save(context, *args)
    except Exception:  # noqa: BLE001 - the original failure is the one to report
        pass


def _injected_fault(context, index) -> None:
    """Fault injection for drills and the demo: input {"fault": {"at": k, "error":
    "transient"|"permanent", "retry_numbers": [0], "attempts": [1]}} fails before
    conversation k on the listed manual-retry numbers and attempts; {"pace": seconds,
    "pace_from": k} reads each conversation from k on that much slower, so progress can be
    watched."""
    fault = context.input.get("fault")
    if fault and fault.get("pace") and index >= fault.get("pace_from", 0):
        time.sleep(fault["pace"])
    if not fault or index != fault.get("at"):
        return
    if context.operation.retry_number not in fault.get("retry_numbers", [0]):
        return
    if "attempts" in fault and context.attempt_number not in fault["attempts"]:
        return
    if fault.get("error") == "permanent":
        raise PermanentError("import_interrupted", f"injected permanent fault at {index}")
    raise TransientError("import_interrupted", f"injected transient fault at {index}")

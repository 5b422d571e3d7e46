"""Events: what happened to someone's work, told to whoever listens (the webhooks app).

An event is emitted inside the transaction that makes it true: the engine's from the follow-ups
of a final state (run once, by whoever clears `followup_due`) and from the conditional UPDATEs
that park and release work behind a gate; a workload's from its own continuation. So it exists
exactly when what it tells happened: a rollback takes it back, and a crash can neither lose it
nor say it twice. Listeners run in that same transaction and must only write rows (sending
anything is work for an operation of their own). `key` names the event: a listener that is
asked twice about the same key (two racing continuations reaching the same conclusion) keeps
one.
"""
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The catalogue: every event type and what it means. Payload shapes: webhooks.payloads.
CATALOGUE = {
    "operation.failed": "An operation failed for good (its automatic retries are spent, or "
                        "the error is permanent); a manual retry may still recover it.",
    "operation.recovered": "A retried operation succeeded: the chain that had failed "
                           "recovered.",
    "operation.waiting": "An operation waits for an outside service that is down; it goes on "
                         "by itself when the service is back.",
    "operation.resumed": "An operation that waited for a service was let through again.",
    "job.finished": "Every question of a job has an answer or has failed for good.",
    "batch.phase_failed": "A phase of a batch failed for good for one essay (or for the "
                          "batch-only phase).",
    "batch.finished": "Every phase a batch asked for has finished (or failed for good).",
    "import.full_pass.completed": "The deep memory (full pass) of an import is complete.",
    "import.full_pass.failed": "The deep memory (full pass) of an import failed for good.",
}


@dataclass(frozen=True)
class Event:
    type: str
    owner_id: int
    key: str
    data: dict[str, Any]


_listeners: list[Callable[[Event], None]] = []


def listen(listener: Callable[[Event], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def listening() -> bool:
    return bool(_listeners)


def emit(type: str, owner_id: int, data: dict, *, key: str) -> None:
    """Tell every listener, in the caller's transaction."""
    if type not in CATALOGUE:
        raise ValueError(f"no event type {type!r} in the catalogue")
    event = Event(type, owner_id, key, data)
    for listener in _listeners:
        listener(event)


# What `operation_data` reads of an operation (code that loads operations to announce them
# loads only these).
OPERATION_FIELDS = ("pk", "kind", "owner_id", "status", "attempt_count", "retry_number",
                    "dependency", "error_code", "error_message", "root_id")


def operation_data(operation, status: str | None = None) -> dict:
    """The `operation` object of the operation.* events (and of the workloads' events)."""
    error = ({"code": operation.error_code, "message": operation.error_message}
             if operation.error_code else None)
    return {"id": str(operation.pk), "kind": operation.kind,
            "status": status or operation.status,
            "attempts": operation.attempt_count, "retry_number": operation.retry_number,
            "dependency": operation.dependency or None, "error": error,
            "root_id": str(operation.root_id or operation.pk)}


def about_operation(type: str, operation, *, status: str | None = None,
                    once: bool = True) -> None:
    """An operation.* event for `operation` (never for a quiet kind: webhook deliveries do not
    announce themselves). `once`: the operation has this event once in its life (failed,
    recovered); otherwise (waiting, resumed) each emission is its own event, and the
    conditional UPDATE that emits it is what keeps it to one."""
    if not _listeners or operation.kind_spec.quiet:
        return
    key = f"{type}:{operation.pk}" + ("" if once else f":{uuid.uuid4().hex}")
    emit(type, operation.owner_id, {"operation": operation_data(operation, status)}, key=key)

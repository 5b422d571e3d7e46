"""The acts on operations that people and workloads perform: submit, retry, cancel.

Manual retry exists once, here; the page, the API and the admin differ only in how they
render its answer or its refusal.
"""
import logging
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Now

from operations import fastpath, kinds
from operations.delivery import enqueue_all_on_commit, enqueue_on_commit
from operations.models import Channel, Operation, SendWindow, Status, Trigger, db_now_plus
from operations.refusals import declare

log = logging.getLogger("rebound.retry")
MAX_REASON_LENGTH = 500

INVALID = declare("invalid", 400, "Some fields are not valid.")
NOT_FOUND = declare("not_found", 404, "No operation with that id.")
NOT_FAILED = declare("not_failed", 409,
                     "Only a failed operation can be retried; this one is completed.")
ALREADY_RETRIED = declare("already_retried", 409, "This operation has already been retried.")
RETRY_LIMIT_REACHED = declare("retry_limit_reached", 429,
                              "This has been retried 3 times, the most allowed.")
INPUT_MISSING = declare("input_missing", 409,
                        "The stored input for this is gone or has changed. Upload it again.")
REASON_TOO_LONG = declare("reason_too_long", 400, "The reason may be at most 500 characters.")
NOT_CANCELLABLE = declare("not_cancellable", 409,
                          "Only a pending or scheduled operation can be cancelled.")


def max_manual_retries() -> int:
    return settings.REBOUND["MAX_MANUAL_RETRIES"]


def submit(kind: str, owner, input: dict, *, channel=Channel.AUTO, triggered_by=None,
           checkpoint=None, dedupe_key: str | None = None,
           dependency: str | None = None) -> Operation:
    """Create a pending operation of a registered kind; it is delivered after commit.
    `dependency` names the outside service it needs (default: what its kind derives from the
    input); while that service's gate is not closed, it waits instead of running.

    With a `dedupe_key`, submitting the same key again (two racing completions that both
    start the next step, a follow-up run twice) returns the operation that exists instead.
    """
    fields = _new_fields(kind, owner, input, dependency, channel=channel,
                         triggered_by=triggered_by, checkpoint=checkpoint, dedupe_key=dedupe_key)
    if dedupe_key is None:
        operation = fastpath.create(**fields)
    else:
        try:
            with transaction.atomic():  # a savepoint: the surrounding transaction survives
                operation = fastpath.create(**fields)
        except IntegrityError:
            # The key exists: another submission won (its insert committed before ours failed).
            existing = Operation.objects.filter(dedupe_key=dedupe_key).first()
            if existing is None:
                raise
            return existing
    enqueue_on_commit(operation.pk)
    return operation


def submit_many(kind: str, owner, inputs: list[dict], *,
                dependencies: list[str] | None = None) -> list[Operation]:
    """Pending operations of one kind for one owner, as `submit` makes them, in one INSERT (a
    fan-out: one event to every endpoint that wants it); delivered after commit."""
    dependencies = dependencies or [None] * len(inputs)
    operations = Operation.objects.bulk_create([
        Operation(**_new_fields(kind, owner, input, dependency))
        for input, dependency in zip(inputs, dependencies, strict=True)])
    enqueue_all_on_commit(operation.pk for operation in operations)
    return operations


def _new_fields(kind: str, owner, input: dict, dependency: str | None, *,
                channel=Channel.AUTO, triggered_by=None, checkpoint=None,
                dedupe_key: str | None = None) -> dict:
    """A new pending operation's fields (`dependency` None: what its kind derives)."""
    spec = kinds.get(kind)
    if dependency is None:
        dependency = spec.dependency(input) if spec.dependency else ""
    return dict(kind=kind, owner=owner, input=input, checkpoint=checkpoint,
                dependency=dependency, max_attempts=spec.policy.max_attempts, channel=channel,
                triggered_by=triggered_by or owner, enqueued_at=Now(), dedupe_key=dedupe_key)


@dataclass
class RetryRefused(Exception):
    """Why a manual retry was refused, with the HTTP status every surface uses for it."""

    code: str
    status: int
    message: str
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.code}: {self.message}"


def not_found() -> RetryRefused:
    # One refusal for "no such operation" and "not yours": nobody learns what exists.
    return RetryRefused(NOT_FOUND, 404, "No operation with that id.")


def lookup(get, message: str = "Not found."):
    """`get()`, or the one 404 refusal for an id that is unknown, malformed or not yours."""
    try:
        return get()
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError):
        raise RetryRefused(NOT_FOUND, 404, message) from None


def find_for(user, operation_id, *, staff: bool = False) -> Operation:
    """The operation if `user` may act on it (its owner, or staff through the admin), with the
    id of its retry if it has one (`child_pk`: the same query answers both)."""
    operations = Operation.objects.all() if staff else Operation.objects.filter(owner=user)
    try:
        return operations.annotate(child_pk=F("child__pk")).get(pk=operation_id)
    except (Operation.DoesNotExist, ValidationError, ValueError, TypeError):
        # A malformed id is as unknown as a well-formed one that does not exist.
        raise not_found() from None


def check_retryable(operation: Operation) -> None:
    """Raise RetryRefused if a manual retry of `operation` would be refused now."""
    if operation.status != Status.FAILED:
        raise RetryRefused(
            NOT_FAILED, 409,
            f"Only a failed operation can be retried; this one is {operation.status}.",
            {"current_status": operation.status})
    if hasattr(operation, "child_pk"):  # find_for answered it already
        child_pk = operation.child_pk
    else:
        child_pk = Operation.objects.filter(parent=operation).values_list("pk", flat=True).first()
    if child_pk is not None:
        raise already_retried(child_pk)
    if operation.retry_number >= max_manual_retries():
        raise RetryRefused(
            RETRY_LIMIT_REACHED, 429,
            f"This has been retried {operation.retry_number} times, the most allowed. "
            "Contact support with the reference.",
            {"retry_count": operation.retry_number, "max_retries": max_manual_retries()})
    if not _input_available(operation):
        raise RetryRefused(INPUT_MISSING, 409,
                           "The stored input for this is gone or has changed. Upload it again.")


def already_retried(child) -> RetryRefused:
    """`child`: the retry that exists, or its id."""
    return RetryRefused(ALREADY_RETRIED, 409, "This operation has already been retried.",
                        {"retry_operation_id": str(getattr(child, "pk", child))})


def _input_available(operation) -> bool:
    return bool(operation.kind_spec.input_available(operation.input))


def check_reason(reason: str) -> None:
    if "\x00" in (reason or ""):
        raise RetryRefused(INVALID, 400, "The reason cannot contain NUL characters.",
                           {"field": "reason"})
    if len(reason or "") > MAX_REASON_LENGTH:
        raise RetryRefused(REASON_TOO_LONG, 400,
                           f"The reason may be at most {MAX_REASON_LENGTH} characters.",
                           {"field": "reason", "max_length": MAX_REASON_LENGTH})


def retry_operation(operation_id, *, by, channel: str, reason: str = "",
                    staff: bool = False) -> Operation:
    """Start a new operation that retries a failed one; the failed one stays as it was.

    Raises RetryRefused (not_found 404, not_failed / already_retried / input_missing 409,
    retry_limit_reached 429, reason_too_long 400). Safe under any concurrency: the unique
    parent link lets exactly one child exist.
    """
    check_reason(reason)
    operation = find_for(by, operation_id, staff=staff)
    return _retry(operation, by=by, channel=channel, reason=reason or "")


def _retry(operation: Operation, *, by, channel: str, reason: str,
           start_in: float = 0.0) -> Operation:
    """The retry itself, for an operation the caller may act on. With `start_in` > 0 the
    child waits, `retry_scheduled`, until that many seconds from now (database clock)."""
    check_retryable(operation)
    waits = start_in > 0
    try:
        # One INSERT commits on its own; inside a caller's transaction it needs a savepoint so
        # that a lost race (IntegrityError) leaves the caller's transaction usable.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            child = Operation.objects.create(
                kind=operation.kind, owner_id=operation.owner_id, input=operation.input,
                dependency=operation.dependency,
                checkpoint=operation.checkpoint, max_attempts=operation.max_attempts,
                parent=operation, root_id=operation.root_id or operation.pk,
                retry_number=operation.retry_number + 1, is_retry=True,
                next_trigger=Trigger.MANUAL, triggered_by=by, channel=channel,
                retry_reason=reason,
                status=Status.RETRY_SCHEDULED if waits else Status.PENDING,
                next_attempt_at=db_now_plus(start_in) if waits else None,
                enqueued_at=None if waits else Now())
    except IntegrityError:
        # A concurrent retry created the one allowed child between our check and our insert.
        child = Operation.objects.filter(parent=operation).first()
        if child is None:
            raise
        raise already_retried(child) from None
    if not waits:
        enqueue_on_commit(child.pk)  # a waiting child is released by the dispatcher when due
    # %r keeps a reason's newlines and markup on one escaped log line.
    log.info("retry operation=%s child=%s retry_number=%s by=%s channel=%s start_in=%.2f "
             "reason=%r", operation.pk, child.pk, child.retry_number, getattr(by, "pk", None),
             channel, start_in, reason)
    return child


SKIP_REASONS = ("retry_limit_reached", "already_retried", "input_missing", "not_failed")


def bulk_retry_rate() -> float:
    return settings.REBOUND["BULK_RETRY_RATE"]


@dataclass
class BulkRetrySlots:
    """Start times for the children of one bulk retry, taken from one schedule shared by every
    bulk retry: the row `bulk-retry` holds the last start handed out (database clock), and a
    bulk retry reserves its run of slots after it under the row's lock, so bulk retries running
    at once queue one behind the other instead of each starting from now."""

    first_in: float  # seconds from the reservation (database clock) to the first slot
    spacing: float
    count: int
    last_at: object = None  # the last slot reserved, as stored

    KEY = "bulk-retry"

    @classmethod
    def reserve(cls, count: int, spacing: float) -> "BulkRetrySlots":
        if count == 0:
            return cls(0.0, spacing, 0)
        with transaction.atomic():
            SendWindow.objects.get_or_create(key=cls.KEY)
            # On PostgreSQL the row lock queues concurrent reservations; SQLite's IMMEDIATE
            # transactions already let one writer in at a time.
            window = (SendWindow.objects.select_for_update().annotate(now=Now())
                      .get(key=cls.KEY))
            now, last = window.now, window.last_sent_at
            first = max(now, last + timedelta(seconds=spacing)) if last else now
            window.last_sent_at = first + timedelta(seconds=spacing * (count - 1))
            window.save(update_fields=["last_sent_at"])
        return cls((first - now).total_seconds(), spacing, count, window.last_sent_at)

    def start_in(self, k: int) -> float:
        """Seconds from the reservation until the k-th child (from 0) may start."""
        return self.first_in + k * self.spacing

    def give_back_unused(self, used: int) -> None:
        """Slots reserved for parents that were skipped go back, unless a later bulk retry
        has reserved after them already (then they stay a gap: slower, never faster)."""
        if used >= self.count or self.last_at is None:
            return
        end = self.last_at - timedelta(seconds=self.spacing * (self.count - used))
        SendWindow.objects.filter(key=self.KEY, last_sent_at=self.last_at).update(
            last_sent_at=end)


def retry_failed(operations, *, by, channel: str, reason: str = "", dry_run: bool = False,
                 staff: bool = False) -> dict:
    """Retry many failed operations through the one retry path, and report what happened:
    `{"eligible", "retried": [ids], "skipped": {reason: n}, "by_error": {code: n}}`.

    `eligible` counts what was (or, in a dry run, would be) retried; with `skipped` it adds up
    to the operations given. Children are staggered at REBOUND_BULK_RETRY_RATE per second in
    total, across every bulk retry running at once (the page, the admin, the API; any user), so
    bulk retries never stampede a provider. A dry run writes nothing. Safe under concurrency:
    each parent gets at most one child, whoever asks.
    """
    check_reason(reason)
    operations = list(operations)
    spacing = 1.0 / bulk_retry_rate()
    slots = None if dry_run else BulkRetrySlots.reserve(
        sum(op.status == Status.FAILED for op in operations), spacing)
    # Each slot is written relative to the database clock at its insert, less the time this
    # loop has taken so far.
    began = time.monotonic()
    eligible, retried = 0, []
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    by_error = Counter()
    for operation in operations:
        if operation.status == Status.FAILED:
            by_error[operation.error_code or "unknown"] += 1
        try:
            if not staff and operation.owner_id != getattr(by, "pk", None):
                raise not_found()
            if dry_run:
                check_retryable(operation)
            else:
                slot = slots.start_in(len(retried)) - (time.monotonic() - began)
                child = _retry(operation, by=by, channel=channel, reason=reason or "",
                               start_in=slot if slot > 0.001 else 0.0)
                retried.append(str(child.pk))
            eligible += 1
        except RetryRefused as refused:
            skipped[refused.code] = skipped.get(refused.code, 0) + 1
    if slots is not None:
        slots.give_back_unused(len(retried))
    log.info("bulk retry by=%s channel=%s dry_run=%s eligible=%s skipped=%s", getattr(by, "pk", None),
             channel, dry_run, eligible, skipped)
    return {"eligible": eligible, "retried": retried, "skipped": skipped,
            "by_error": dict(by_error.most_common())}


def cancel_operation(operation_id, *, by, staff: bool = False) -> Operation:
    """Cancel a pending or scheduled operation. RetryRefused 409 `not_cancellable` otherwise."""
    operation = find_for(by, operation_id, staff=staff)
    if not operation.cancel():
        operation.refresh_from_db()
        raise RetryRefused(NOT_CANCELLABLE, 409,
                           f"Only a pending or scheduled operation can be cancelled; this one "
                           f"is {operation.status}.", {"current_status": operation.status})
    return operation

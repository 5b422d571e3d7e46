"""Retry chains, read cheaply. A workload row points at the FIRST operation of its chain; a
manual retry adds the next operation (one child per parent). What the workloads show — the
operation that speaks for the work now, the retry count, the first failure, every manual retry
and every attempt — is derived here, in a constant number of queries, and never copied.
"""
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q

from operations.models import Attempt, Operation, Status


@dataclass
class Chain:
    """One retry chain: its first and latest operation, and (when read whole) everything."""

    root: Operation
    latest: Operation
    operations: list[Operation] | None = None  # oldest first; only from `history_of`
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def retry_count(self) -> int:
        """Manual retries so far."""
        return self.latest.retry_number

    @property
    def max_retries(self) -> int:
        return settings.REBOUND["MAX_MANUAL_RETRIES"]

    @property
    def last_retry_at(self):
        return self.latest.created_at if self.latest.retry_number else None

    @property
    def original_error(self) -> dict | None:
        """The first failure's code and message: the first operation's final error, which no
        later retry overwrites."""
        if self.root.status != Status.FAILED:
            return None
        return {"code": self.root.error_code, "message": self.root.error_message}

    @property
    def retry_history(self) -> list[dict]:
        """Each manual retry: when, who, through which channel, why, and how it went."""
        if self.operations is None:
            raise ValueError("retry_history needs the whole chain: read it with history_of()")
        return [{"at": op.created_at, "by": op.triggered_by.get_username() if op.triggered_by
                 else None, "channel": op.channel, "reason": op.retry_reason,
                 "outcome": op.status, "operation_id": op.pk, "retry_number": op.retry_number}
                for op in self.operations if op.is_retry]


class NotStarted:
    """The chain of work that has not started yet: nothing ran, nothing was retried. It reads
    like a Chain, so a workload shows one kind of row whether its work started or not."""

    root = latest = None
    operations: list = []
    attempts: list = []
    retry_count = 0
    last_retry_at = None
    original_error = None
    retry_history: list = []

    @property
    def max_retries(self) -> int:
        return settings.REBOUND["MAX_MANUAL_RETRIES"]


NOT_STARTED = NotStarted()


def latest_of(first_ids) -> dict:
    """{first operation id: Chain} for many chains, in one query (the first and the latest
    operation of each: the latest is the one without a child)."""
    first_ids = list(first_ids)
    # A checkpoint or an error's server-side detail can be large and no reader of a chain
    # shows them: a grid of hundreds of chains leaves them in the database.
    rows = Operation.objects.filter(
        Q(pk__in=first_ids) | Q(root_id__in=first_ids, child__isnull=True)).defer(
        "checkpoint", "error_detail")
    firsts, latest = {}, {}
    for op in rows:
        if op.root_id is None:
            firsts[op.pk] = op
        else:
            latest[op.root_id] = op
    # A first operation without a child is its chain's latest too.
    return {pk: Chain(root=first, latest=latest.get(pk, first)) for pk, first in firsts.items()}


def history_of(first_id) -> Chain:
    """A chain read whole: every operation oldest first, and every attempt of every operation
    oldest first (two queries)."""
    operations = list(Operation.objects.filter(Q(pk=first_id) | Q(root_id=first_id))
                      .select_related("triggered_by").order_by("retry_number"))
    if not operations:
        raise Operation.DoesNotExist(f"no chain starts at {first_id}")
    attempts = list(Attempt.objects.filter(operation__in=[op.pk for op in operations])
                    .order_by("operation__retry_number", "number"))
    by_id = {op.pk: op for op in operations}
    for attempt in attempts:
        attempt.operation = by_id[attempt.operation_id]  # no query per attempt
    return Chain(root=operations[0], latest=operations[-1], operations=operations,
                 attempts=attempts)

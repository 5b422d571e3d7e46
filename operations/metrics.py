"""How retries go for a small, scoped set of operations (one job's cells), computed from its
Operation and Attempt rows with SQL aggregates. The figures of all work, over any window and
at any size of history, come from the rollups (`operations.rollups`) instead.

Per kind (and optionally per a key of the input, such as "region", and per day):
- operations: how many were created; completed / failed: how many ended that way;
- success_rate: completed / (completed + failed);
- attempts_per_success: the attempts a completed operation took, on average;
- auto_retry_share: the share of finished operations that needed more than one attempt;
- manual_retries / manual_retries_succeeded: operations started by a manual retry, and how
  many of them completed;
- time_to_success_p50 / _p95: seconds from creation to completion of completed operations;
- crashes_recovered: attempts recorded as crashed (the worker died; the engine recovered).
"""

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate

from operations.models import Attempt, Operation, Status

TERMINAL_OUTCOMES = (Status.COMPLETED, Status.FAILED)


class _Seconds(Func):
    """finished_at - created_at in seconds (PostgreSQL)."""

    template = "EXTRACT(EPOCH FROM (%(expressions)s))"
    output_field = FloatField()


class _Percentile(Aggregate):
    """percentile_cont(p) WITHIN GROUP (ORDER BY x) (PostgreSQL)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        super().__init__(expression, percentile=percentile, **extra)


def _scoped(queryset, prefix: str, kind=None, since=None, owner=None, where=None):
    """Operations (or rows of operations, through `prefix`) of a kind, since a time, of an
    owner, matching `where` (lookups on Operation, e.g. {"input__job_id": 7})."""
    filters = {f"{prefix}kind": kind, f"{prefix}created_at__gte": since, f"{prefix}owner": owner,
               **{f"{prefix}{name}": value for name, value in (where or {}).items()}}
    return queryset.filter(**{name: value for name, value in filters.items()
                              if value is not None})


def _operations(kind=None, since=None, owner=None, where=None):
    return _scoped(Operation.objects.all(), "", kind, since, owner, where)


def _grouped(queryset, prefix: str, key: str | None, by_day: bool):
    """Annotate the grouping columns (kind, key, day) under plain names; return their names."""
    names = {"kind": F(f"{prefix}kind")}
    if key:
        names["key"] = KeyTextTransform(key, f"{prefix}input")
    if by_day:
        names["day"] = TruncDate(f"{prefix}created_at")
    return queryset.annotate(**{f"g_{n}": e for n, e in names.items()}), [f"g_{n}" for n in names]


def summary(*, kind: str | None = None, key: str | None = None, by_day: bool = False,
            since=None, owner=None, where: dict | None = None) -> list[dict]:
    """One row of figures per kind (and key value, and day), ordered by those."""
    ops, group = _grouped(_operations(kind, since, owner, where), "", key, by_day)
    rows = ops.values(*group).annotate(
        operations=Count("pk"),
        completed=Count("pk", filter=Q(status=Status.COMPLETED)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        finished=Count("pk", filter=Q(status__in=TERMINAL_OUTCOMES)),
        success_attempts=Sum("attempt_count", filter=Q(status=Status.COMPLETED)),
        auto_retried=Count("pk", filter=Q(status__in=TERMINAL_OUTCOMES, attempt_count__gt=1)),
        manual_retries=Count("pk", filter=Q(is_retry=True)),
        manual_retries_succeeded=Count("pk", filter=Q(is_retry=True, status=Status.COMPLETED)),
    ).order_by(*group)
    crashes = _crashes(kind, since, owner, where, key, by_day)
    durations = _time_to_success(kind, since, owner, where, key, by_day)
    return [_figures(row, group, crashes, durations) for row in rows]


def _figures(row, group, crashes, durations) -> dict:
    ident = tuple(row[g] for g in group)
    completed, failed = row["completed"], row["failed"]
    p50, p95 = durations.get(ident, (None, None))
    figures = {g.removeprefix("g_"): row[g] for g in group}
    figures.update(
        operations=row["operations"], completed=completed, failed=failed,
        success_rate=_ratio(completed, completed + failed),
        attempts_per_success=_ratio(row["success_attempts"] or 0, completed),
        auto_retry_share=_ratio(row["auto_retried"], row["finished"]),
        manual_retries=row["manual_retries"],
        manual_retries_succeeded=row["manual_retries_succeeded"],
        time_to_success_p50=p50, time_to_success_p95=p95,
        crashes_recovered=crashes.get(ident, 0))
    return figures


def _ratio(part, whole) -> float | None:
    return round(part / whole, 4) if whole else None


def _crashes(kind, since, owner, where, key, by_day) -> dict:
    attempts = _scoped(Attempt.objects.filter(outcome="crashed"), "operation__", kind, since,
                       owner, where)
    attempts, group = _grouped(attempts, "operation__", key, by_day)
    return {tuple(row[g] for g in group): row["n"]
            for row in attempts.values(*group).annotate(n=Count("pk"))}


def _time_to_success(kind, since, owner, where, key, by_day) -> dict:
    """{group: (p50, p95)} of seconds from creation to completion."""
    done, group = _grouped(_operations(kind, since, owner, where).filter(
        status=Status.COMPLETED, finished_at__isnull=False),
                           "", key, by_day)
    if connection.vendor == "postgresql":
        seconds = _Seconds(F("finished_at") - F("created_at"))
        return {tuple(row[g] for g in group): (_round(row["p50"]), _round(row["p95"]))
                for row in done.values(*group).annotate(p50=_Percentile(seconds, 0.5),
                                                        p95=_Percentile(seconds, 0.95))}
    # SQLite has no percentile aggregate: the same continuous percentiles, over the rows.
    samples: dict[tuple, list[float]] = {}
    for row in done.values(*group, "created_at", "finished_at"):
        samples.setdefault(tuple(row[g] for g in group), []).append(
            (row["finished_at"] - row["created_at"]).total_seconds())
    return {ident: (_round(_percentile(values, 0.5)), _round(_percentile(values, 0.95)))
            for ident, values in samples.items()}


def _percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    rank = p * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value) -> float | None:
    return None if value is None else round(value, 3)

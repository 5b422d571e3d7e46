"""The figures of finished work, kept in Rollup rows so that reading them costs the same at a
thousand operations as at ten million, and so that they outlive the rows pruned from history.

The hot path writes nothing here. A finished Operation or Attempt row is `rolled_up=False`
until `fold()` (the dispatcher, every half second) counts a batch of them: in one transaction it
locks the batch (skipping rows another fold holds), adds their figures to the hour, day and
total rollups, and marks them counted. A row is thus counted exactly once, whatever crashed
or ran twice: duplicate deliveries and zombie writes never reach the rows (their writes are
fenced), and a fold that dies rolls back whole. `rebuild()` counts the rows again.

Figures, per kind and input key value ("region"; "" without one):
- `finished:<status>` operations that ended completed, failed or cancelled;
- `attempts:<outcome>` attempts by outcome (`attempts:crashed`: crashes recovered);
- `success_attempts` the attempts completed operations took; `auto_retried` finished
  (completed or failed) operations that took more than one attempt;
- `manual:<channel>` / `manual_ok:<channel>` manual retries that finished, and completed;
- `tts:<le>` completed operations by seconds from creation to completion (histogram buckets,
  not cumulative) and `tts_sum` their seconds.
An operation counts in the hour it finished; an attempt in the hour it ended.
"""
import math
from collections import Counter
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import OperationalError, connection, transaction
from django.db.models import (Case, Count, DurationField, ExpressionWrapper, F, FloatField,
                              Sum, Value, When)
from django.db.models.functions import TruncHour
from django.db.models.fields.json import KeyTextTransform

from operations.models import LIVE, Attempt, Grain, Operation, Rollup, SendWindow, Status

KEY = "region"  # the input key figures are split by
EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
TTS_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, math.inf)
BATCH = 2000
PRUNED_THROUGH = "history-pruned-through"
LOCK_NOT_AVAILABLE = "55P03"  # SendWindow key: rows finished before were pruned


def bucket_name(le: float) -> str:
    return "+Inf" if le == math.inf else f"{le:g}"


def bucket_of(seconds: float) -> float:
    return next(le for le in TTS_BUCKETS if seconds <= le)


def operation_figures(row: dict) -> Counter:
    """What finished operations add to the figures of their kind: one row, or a group of
    `n` alike (with `tries` attempts and `seconds` to success between them, in bucket `le`)."""
    status, n = row["status"], row["n"]
    figures = Counter({f"finished:{status}": n})
    if status in (Status.COMPLETED, Status.FAILED) and row["retried"]:
        figures["auto_retried"] += n
    if row["is_retry"]:
        figures[f"manual:{row['channel']}"] += n
        if status == Status.COMPLETED:
            figures[f"manual_ok:{row['channel']}"] += n
    if status == Status.COMPLETED:
        figures["success_attempts"] += row["tries"]
        figures[f"tts:{bucket_name(row['le'])}"] += n
        figures["tts_sum"] += row["seconds"]
    return figures


def _one(row: dict) -> dict:
    """A single operation row as a group of one."""
    seconds = max(0.0, (row["finished_at"] - row["created_at"]).total_seconds())
    return {**row, "n": 1, "retried": row["attempt_count"] > 1, "tries": row["attempt_count"],
            "seconds": seconds, "le": bucket_of(seconds)}


def periods(at: datetime) -> list[tuple[str, datetime]]:
    at = at.astimezone(dt_timezone.utc)
    hour = at.replace(minute=0, second=0, microsecond=0)
    return [(Grain.HOUR, hour), (Grain.DAY, hour.replace(hour=0)), (Grain.TOTAL, EPOCH)]


def _key(value) -> str:
    return "" if value is None else str(value)[:120]


def _operation_rows(queryset):
    return queryset.annotate(key=KeyTextTransform(KEY, "input")).values(
        "pk", "kind", "key", "status", "attempt_count", "is_retry", "channel", "created_at",
        "finished_at")


def _attempt_rows(queryset):
    return queryset.annotate(kind=F("operation__kind"),
                             key=KeyTextTransform(KEY, "operation__input")).values(
        "pk", "kind", "key", "outcome", "finished_at")


def _add(totals: Counter, row: dict, figures: Counter) -> None:
    for grain, period in periods(row["finished_at"]):
        for figure, value in figures.items():
            totals[(grain, period, row["kind"], _key(row["key"]), figure)] += value


def contributions(operations, attempts) -> Counter:
    """{(grain, period, kind, key, figure): value} of these operation and attempt rows (or
    groups of rows: with `n`, see `operation_figures`)."""
    totals: Counter = Counter()
    for row in operations:
        _add(totals, row, operation_figures(row if "n" in row else _one(row)))
    for row in attempts:
        _add(totals, row, Counter({f"attempts:{row['outcome']}": row.get("n", 1)}))
    return totals


def _grouped_operations(queryset):
    """Counted operations grouped in the database by hour and everything the figures tell
    apart: a rebuild reads thousands of groups, not millions of rows."""
    duration = ExpressionWrapper(F("finished_at") - F("created_at"),
                                 output_field=DurationField())
    buckets = [When(duration__lte=timedelta(seconds=le), then=Value(le))
               for le in TTS_BUCKETS if le != math.inf]
    rows = queryset.annotate(
        finished_hour=TruncHour("finished_at", tzinfo=dt_timezone.utc),
        key=KeyTextTransform(KEY, "input"), duration=duration,
        retried=Case(When(attempt_count__gt=1, then=Value(True)), default=Value(False)),
        le=Case(*buckets, default=Value(math.inf), output_field=FloatField()),
    ).values("finished_hour", "kind", "key", "status", "retried", "is_retry", "channel",
             "le").annotate(n=Count("pk"), tries=Sum("attempt_count"), total=Sum("duration"))
    for row in rows.order_by().iterator(chunk_size=5000):
        total = row["total"] or timedelta()
        yield {**row, "finished_at": row["finished_hour"],
               "seconds": max(0.0, total.total_seconds())}


def _grouped_attempts(queryset):
    rows = queryset.annotate(
        finished_hour=TruncHour("finished_at", tzinfo=dt_timezone.utc),
        kind=F("operation__kind"), key=KeyTextTransform(KEY, "operation__input"),
    ).values("finished_hour", "kind", "key", "outcome").annotate(n=Count("pk"))
    for row in rows.order_by().iterator(chunk_size=5000):
        yield {**row, "finished_at": row["finished_hour"]}


def fold(limit: int = BATCH) -> int:
    """Count a batch of finished rows not counted yet; return how many (0 also while a
    rebuild holds the rollups: the dispatcher goes on with its other duties meanwhile)."""
    try:
        return _fold(limit)
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return 0
        raise


def _fold(limit: int) -> int:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Rollup._meta.db_table} IN ROW EXCLUSIVE MODE NOWAIT")
                operations = _counted(cursor, _COUNT_OPERATIONS, limit, _OPERATION_GROUP)
                attempts = _counted(cursor, _COUNT_ATTEMPTS, limit, _ATTEMPT_GROUP)
        else:
            operations = list(_operation_rows(_locked(Operation.objects.filter(
                finished_at__isnull=False, rolled_up=False)))[:limit])
            attempts = list(_attempt_rows(_locked(Attempt.objects.filter(
                finished_at__isnull=False, rolled_up=False)))[:limit])
            if operations:
                Operation.objects.filter(pk__in=[row["pk"] for row in operations]).update(
                    rolled_up=True)
            if attempts:
                Attempt.objects.filter(pk__in=[row["pk"] for row in attempts]).update(
                    rolled_up=True)
        add(contributions(operations, attempts))
    return sum(row.get("n", 1) for row in operations) + sum(row.get("n", 1) for row in attempts)


def _bucket(seconds: str) -> str:
    """SQL for the time-to-success bucket (`bucket_of`) of a number of seconds."""
    bounds = " ".join(f"WHEN {seconds} <= {le} THEN {le}" for le in TTS_BUCKETS if le != math.inf)
    return f"CASE {bounds} ELSE 'Infinity'::float8 END"


# On PostgreSQL one statement per table locks a batch (skipping rows another fold holds), marks
# it counted and gives back its groups, as `_grouped_operations` makes them: each row is written
# once (not locked, then updated), and the dispatcher reads a few groups, not every row.
_OPERATION_GROUP = ("finished_at", "kind", "key", "status", "retried", "is_retry", "channel",
                    "le", "n", "tries", "seconds")
_ATTEMPT_GROUP = ("finished_at", "kind", "key", "outcome", "n")
_COUNT_OPERATIONS = f"""
WITH batch AS (
    SELECT id FROM operations_operation WHERE finished_at IS NOT NULL AND NOT rolled_up
    LIMIT %s FOR UPDATE SKIP LOCKED
), counted AS (
    UPDATE operations_operation AS o SET rolled_up = true FROM batch WHERE o.id = batch.id
    RETURNING o.finished_at, o.kind, o.input ->> '{KEY}' AS key, o.status, o.attempt_count,
              o.is_retry, o.channel,
              GREATEST(EXTRACT(epoch FROM o.finished_at - o.created_at), 0)::float8 AS seconds
)
SELECT date_trunc('hour', finished_at, 'UTC'), kind, key, status, attempt_count > 1, is_retry,
       channel, {_bucket("seconds")}, count(*), sum(attempt_count), sum(seconds)
FROM counted GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""
_COUNT_ATTEMPTS = f"""
WITH batch AS (
    SELECT id FROM operations_attempt WHERE finished_at IS NOT NULL AND NOT rolled_up
    LIMIT %s FOR UPDATE SKIP LOCKED
), counted AS (
    UPDATE operations_attempt AS a SET rolled_up = true FROM batch, operations_operation AS o
    WHERE a.id = batch.id AND o.id = a.operation_id
    RETURNING a.finished_at, o.kind, o.input ->> '{KEY}' AS key, a.outcome
)
SELECT date_trunc('hour', finished_at, 'UTC'), kind, key, outcome, count(*)
FROM counted GROUP BY 1, 2, 3, 4"""


def _counted(cursor, sql: str, limit: int, fields: tuple) -> list[dict]:
    cursor.execute(sql, [limit])
    return [dict(zip(fields, row)) for row in cursor.fetchall()]


def fold_all() -> int:
    folded = total = fold()
    while folded:
        folded = fold()
        total += folded
    return total


def _locked(queryset):
    """Rows another fold holds are skipped, not waited for (PostgreSQL; SQLite's IMMEDIATE
    transactions let one writer in at a time)."""
    return queryset.order_by().select_for_update(skip_locked=True, of=("self",))


def add(totals: Counter) -> None:
    """Add to the rollups, one upsert per figure, in key order (two folds lock alike)."""
    if not totals:
        return
    table = connection.ops.quote_name(Rollup._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(grain, adapt(period), kind, key, figure, float(value))
            for (grain, period, kind, key, figure), value in sorted(totals.items())]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (grain, period, kind, key, figure, value) "
            "VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (grain, period, kind, key, figure) "
            f"DO UPDATE SET value = {table}.value + excluded.value", rows)


def pruned_through() -> datetime | None:
    mark = SendWindow.objects.filter(key=PRUNED_THROUGH).first()
    return mark.last_sent_at if mark else None


def rebuild() -> dict:
    """Count the rows again: every period whose rows are all still here (those after the last
    prune) is replaced by what its counted rows give; periods before keep the figures of the
    rows pruned from them. Safe on a live system: counting pauses while it runs (folds skip,
the dispatcher goes on), and workers never touch the rollups."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Rollup._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        since = pruned_through()
        hour = _ceil(since, timedelta(hours=1)) if since else None
        day = _ceil(since, timedelta(days=1)) if since else None
        operations = Operation.objects.filter(rolled_up=True, finished_at__isnull=False)
        attempts = Attempt.objects.filter(rolled_up=True, finished_at__isnull=False)
        if since:
            operations = operations.filter(finished_at__gte=hour)
            attempts = attempts.filter(finished_at__gte=hour)
        fresh = contributions(_grouped_operations(operations), _grouped_attempts(attempts))
        fresh = Counter({k: v for k, v in fresh.items()
                         if k[0] != Grain.DAY or day is None or k[1] >= day})
        replaced = Rollup.objects.exclude(grain=Grain.TOTAL)
        if since:
            replaced = replaced.filter(grain=Grain.HOUR, period__gte=hour) | replaced.filter(
                grain=Grain.DAY, period__gte=day)
        # The totals: what they held, less the days replaced, plus those days counted again.
        old_days = Counter()
        for row in replaced.filter(grain=Grain.DAY).values("kind", "key", "figure", "value"):
            old_days[(row["kind"], row["key"], row["figure"])] += row["value"]
        totals = Counter({(r["kind"], r["key"], r["figure"]): r["value"]
                          for r in Rollup.objects.filter(grain=Grain.TOTAL).values(
                              "kind", "key", "figure", "value")} if since else {})
        totals.subtract(old_days if since else Counter())
        for (grain, _period, kind, key, figure), value in fresh.items():
            if grain == Grain.DAY:
                totals[(kind, key, figure)] += value
        deleted, _ = replaced.delete()
        Rollup.objects.filter(grain=Grain.TOTAL).delete()
        fresh = Counter({k: v for k, v in fresh.items() if k[0] != Grain.TOTAL})
        fresh.update({(Grain.TOTAL, EPOCH, kind, key, figure): value
                      for (kind, key, figure), value in totals.items() if value})
        add(fresh)
    return {"replaced": deleted, "written": len(fresh), "since": since}


def _ceil(at: datetime, step: timedelta) -> datetime:
    at = at.astimezone(dt_timezone.utc)
    floor = EPOCH + ((at - EPOCH) // step) * step
    return floor if floor == at else floor + step


# --- reading ---------------------------------------------------------------------------------

def read(grain: str, since: datetime | None = None, until: datetime | None = None, *,
         kind: str | None = None, by_key: bool = False, by_period: bool = False) -> dict:
    """{(kind[, key][, period]): Counter(figure -> value)} summed over the periods of `grain`
    in [since, until)."""
    rows = Rollup.objects.filter(grain=grain)
    if since is not None:
        rows = rows.filter(period__gte=since)
    if until is not None:
        rows = rows.filter(period__lt=until)
    if kind:
        rows = rows.filter(kind=kind)
    fields = ["kind", *(["key"] if by_key else []), *(["period"] if by_period else [])]
    out: dict = {}
    for row in rows.values(*fields, "figure", "value").order_by():
        out.setdefault(tuple(row[f] for f in fields), Counter())[row["figure"]] += row["value"]
    return out


def summarize(figures: Counter) -> dict:
    """The figures a person reads, from one group's rollup sums."""
    completed = int(figures["finished:completed"])
    failed = int(figures["finished:failed"])
    cancelled = int(figures["finished:cancelled"])
    manual = sum(v for f, v in figures.items() if f.startswith("manual:"))
    manual_ok = sum(v for f, v in figures.items() if f.startswith("manual_ok:"))
    return {
        "completed": completed, "failed": failed, "cancelled": cancelled,
        "finished": completed + failed + cancelled,
        "success_rate": _ratio(completed, completed + failed),
        "attempts_per_success": _ratio(figures["success_attempts"], completed, 2),
        "auto_retry_share": _ratio(figures["auto_retried"], completed + failed),
        "manual_retries": int(manual), "manual_retries_succeeded": int(manual_ok),
        "attempts": int(sum(v for f, v in figures.items() if f.startswith("attempts:"))),
        "crashes_recovered": int(figures["attempts:crashed"]),
        "time_to_success_p50": quantile(figures, 0.5),
        "time_to_success_p95": quantile(figures, 0.95),
    }


def histogram(figures: Counter) -> list[tuple[str, float]]:
    """Cumulative buckets, Prometheus' way: [(le, count of seconds <= le)]."""
    running, out = 0.0, []
    for le in TTS_BUCKETS:
        running += figures[f"tts:{bucket_name(le)}"]
        out.append((bucket_name(le), running))
    return out


def quantile(figures: Counter, q: float) -> float | None:
    """An estimate from the buckets, as PromQL's histogram_quantile (linear in a bucket)."""
    buckets = histogram(figures)
    count = buckets[-1][1]
    if not count:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for (name, cumulative), le in zip(buckets, TTS_BUCKETS):
        if cumulative >= rank:
            if le == math.inf:
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = cumulative - below
            return round(lower + (le - lower) * ((rank - below) / inside if inside else 1), 2)
        lower, below = le, cumulative
    return lower


def _ratio(part, whole, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def live() -> list[dict]:
    """What is live now, per kind and status (pending, processing, scheduled, waiting): one
    count per status, each through that status' partial index, whatever the history's size."""
    rows = []
    for status in LIVE:
        rows += Operation.objects.filter(status=status).values("kind", "status").order_by(
        ).annotate(n=Count("pk"))
    return rows

"""Retention: finished history older than REBOUND_KEEP_DAYS is deleted, in small batches, by
the dispatcher once an hour and by `manage.py prune_history`.

Nothing a page still needs goes:
- each workload prunes its own objects first (`register`): a job or batch past retention is
  deleted whole, with its operations; what a workload keeps (an import profile's latest
  passes) keeps its operations, and kinds a workload `owns` are deleted only by it;
- the engine then deletes retry chains (an operation and its manual retries) that finished
  before the horizon, were counted into the rollups, and that no workload row points to;
- the rollups are never pruned: the figures read the same before and after.
Each batch is its own short transaction on rows no worker touches (they are finished), so no
statement holds locks for long and the workers never wait.
"""
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from operations.models import Attempt, GateEvent, Notification, Operation, SendWindow
from operations.rollups import PRUNED_THROUGH

log = logging.getLogger("rebound.retention")
BATCH = 200
_pruners: list[Callable[[datetime, int], Counter]] = []
_owned: list[str] = []


def register(pruner: Callable[[datetime, int], Counter], *, owns: tuple[str, ...] = ()):
    """A workload's pruner: `pruner(before, batch)` deletes its own objects whose work all
    finished before `before` (see `settled`), at most `batch` per transaction, with their
    operations (`delete_chains`), and returns what it deleted by name ({"jobs": 3}). Kinds
    starting with a prefix in `owns` are left to it: the engine never deletes them itself."""
    _pruners.append(pruner)
    _owned.extend(owns)
    return pruner


def settled(operation_ids, before: datetime) -> bool:
    """Did the retry chains of these operations all finish before `before`? (None: a step
    that never started, not settled.)"""
    ids = list(operation_ids)
    if any(pk is None for pk in ids):
        return False
    roots = {root or pk for pk, root in
             Operation.objects.filter(pk__in=ids).values_list("pk", "root_id")}
    return not Operation.objects.filter(Q(pk__in=roots) | Q(root__in=roots)).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=before)).exists()


def delete_chains(operation_ids) -> Counter:
    """Delete these operations' retry chains with their attempts and notifications (call it in
    the transaction that deletes the workload's rows pointing to them)."""
    roots = {root or pk for pk, root in
             Operation.objects.filter(pk__in=list(operation_ids)).values_list("pk", "root_id")}
    ids = list(Operation.objects.filter(Q(pk__in=roots) | Q(root__in=roots))
               .values_list("pk", flat=True))
    if not ids:
        return Counter()
    _, attempts = Attempt.objects.filter(operation__in=ids).delete()
    _, notified = Notification.objects.filter(operation__in=ids).delete()
    # A chain's members point to each other (parent, root): clear the links, then delete.
    Operation.objects.filter(pk__in=ids).update(parent=None, root=None)
    _, operations = Operation.objects.filter(pk__in=ids).delete()
    return Counter(operations=operations.get("operations.Operation", 0),
                   attempts=attempts.get("operations.Attempt", 0),
                   notifications=notified.get("operations.Notification", 0))


def whole(model, name: str, operations_of: Callable) -> Callable[[datetime, int], Counter]:
    """A pruner that deletes a workload's top-level rows (jobs, batches) created before the
    horizon whose operations (`operations_of(row)`: ids, None for a step not started) all
    settled before it: each row whole, with its children (cascade) and retry chains."""

    def prune_rows(before: datetime, batch: int) -> Counter:
        deleted, after = Counter(), None
        while True:
            with transaction.atomic():
                rows = model.objects.filter(created_at__lt=before).order_by("pk")
                rows = list(rows.filter(pk__gt=after)[:batch] if after else rows[:batch])
                if not rows:
                    return deleted
                after = rows[-1].pk
                gone = {row.pk: list(operations_of(row)) for row in rows}
                gone = {pk: ids for pk, ids in gone.items() if settled(ids, before)}
                model.objects.filter(pk__in=list(gone)).delete()
                deleted[name] += len(gone)
                deleted.update(delete_chains(pk for ids in gone.values() for pk in ids))

    return prune_rows


def horizon() -> datetime:
    return timezone.now() - timedelta(days=settings.REBOUND["KEEP_DAYS"])


def prune(before: datetime | None = None, batch: int = BATCH) -> Counter:
    """Delete what retention allows; return what was deleted, by name."""
    before = before or horizon()
    deleted: Counter = Counter()
    for pruner in _pruners:
        deleted.update(pruner(before, batch))
    after = None
    while True:
        chain, after = _prune_chains(before, batch, after)
        deleted.update(chain)
        if after is None:
            break
    deleted["gate events"] += _prune_gate_events(before, batch)
    _mark(before)
    if any(deleted.values()):
        log.info("pruned history finished before %s: %s", before.isoformat(),
                 ", ".join(f"{n} {name}" for name, n in sorted(deleted.items())))
    return deleted


def prunable(before: datetime):
    """Root operations whose whole retry chain may go: all finished before `before`, all
    counted (attempts too), and none pointed to by a workload's row."""
    roots = Operation.objects.filter(root__isnull=True, created_at__lt=before,
                                     finished_at__lt=before, rolled_up=True)
    for prefix in _owned:
        roots = roots.exclude(kind__startswith=prefix)
    pending = Operation.objects.filter(Q(root=OuterRef("pk")), Q(finished_at__isnull=True)
                                       | Q(finished_at__gte=before) | Q(rolled_up=False))
    uncounted = Attempt.objects.filter(Q(operation=OuterRef("pk"))
                                       | Q(operation__root=OuterRef("pk")),
                                       finished_at__isnull=False, rolled_up=False)
    roots = roots.exclude(Exists(pending)).exclude(Exists(uncounted))
    for relation in workload_relations():
        name = relation.field.name
        roots = roots.exclude(Exists(relation.related_model._base_manager.filter(
            Q(**{name: OuterRef("pk")}) | Q(**{f"{name}__root": OuterRef("pk")}))))
    return roots


def workload_relations():
    """The foreign keys from workloads' models to Operation (found, not imported: the engine
    knows no workload)."""
    return [field for field in Operation._meta.get_fields(include_hidden=True)
            if field.auto_created and not field.concrete and field.is_relation
            and field.related_model._meta.app_label != Operation._meta.app_label]


def _prune_chains(before: datetime, batch: int, after: datetime | None):
    """One batch, oldest first from `after` (where the last batch ended: the next one does not
    walk again past the index entries of what was just deleted). Returns what was deleted and
    where to go on from (None: done)."""
    roots = prunable(before)
    if after is not None:
        roots = roots.filter(created_at__gte=after)
    with transaction.atomic():
        batch_of = list(roots.order_by("created_at").values_list("pk", "created_at")[:batch])
        if not batch_of:
            return Counter(), None
        return delete_chains(pk for pk, _ in batch_of), batch_of[-1][1]


def _prune_gate_events(before: datetime, batch: int) -> int:
    """A gate's history past retention; each gate keeps its latest event (why it is as it is)."""
    latest = GateEvent.objects.filter(gate=OuterRef("gate")).order_by("-at", "-id").values("pk")[:1]
    old = GateEvent.objects.filter(at__lt=before).exclude(pk=Subquery(latest))
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:batch]):
        deleted += GateEvent.objects.filter(pk__in=ids).delete()[0]
    return deleted


def _mark(before: datetime) -> None:
    """Remember the horizon pruned through (only ever forward): `rebuild_metrics` recounts the
    periods after it, and keeps the figures of the periods before."""
    mark, _ = SendWindow.objects.get_or_create(key=PRUNED_THROUGH)
    if mark.last_sent_at is None or mark.last_sent_at < before:
        SendWindow.objects.filter(pk=mark.pk).update(last_sent_at=before)

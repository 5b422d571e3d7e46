"""The rollups are exact: after random workloads (claims, duplicate deliveries, completions,
retries, crashes, zombie writes, outages, cancellations, manual retries; folds at random
moments in between), every figure equals what a count over the rows gives, in every grain.
Pruning keeps them; `rebuild_metrics` gives them back after they were damaged."""
import bisect
import io
import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.models import Count, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from operations import retention, rollups
from operations.errors import Classified
from operations.models import Attempt, Grain, Operation, Rollup, Status
from operations.services import retry_operation, submit
from tests.factories import UserFactory

KINDS = ("diagnostics.flaky", "diagnostics.sleep")
REGIONS = ("us", "eu", None)
TRANSIENT = Classified(True, "ai_unavailable", "AI service unavailable.", "HTTP 500")
PERMANENT = Classified(False, "bad_input", "The input cannot be used.", "HTTP 400")


def counted_over_the_rows() -> dict:
    """The figures as SQL counts over the rows (not the fold's code), per (kind, key)."""
    expected: dict = {}

    def add(kind, key, figure, value):
        if value:
            expected.setdefault((kind, key or ""), Counter())[figure] += value

    ops = Operation.objects.filter(finished_at__isnull=False).annotate(
        key=KeyTextTransform("region", "input"))
    for row in ops.values("kind", "key", "status").annotate(n=Count("pk"),
                                                           tries=Sum("attempt_count")):
        add(row["kind"], row["key"], f"finished:{row['status']}", row["n"])
        if row["status"] == Status.COMPLETED:
            add(row["kind"], row["key"], "success_attempts", row["tries"])
    for row in ops.filter(status__in=(Status.COMPLETED, Status.FAILED), attempt_count__gt=1
                          ).values("kind", "key").annotate(n=Count("pk")):
        add(row["kind"], row["key"], "auto_retried", row["n"])
    for row in ops.filter(is_retry=True).values("kind", "key", "channel").annotate(
            n=Count("pk"), ok=Count("pk", filter=Q(status=Status.COMPLETED))):
        add(row["kind"], row["key"], f"manual:{row['channel']}", row["n"])
        add(row["kind"], row["key"], f"manual_ok:{row['channel']}", row["ok"])
    bounds = list(rollups.TTS_BUCKETS)
    for row in ops.filter(status=Status.COMPLETED).values("kind", "key", "created_at",
                                                          "finished_at"):
        seconds = max(0.0, (row["finished_at"] - row["created_at"]).total_seconds())
        le = bounds[bisect.bisect_left(bounds, seconds)]
        add(row["kind"], row["key"], f"tts:{rollups.bucket_name(le)}", 1)
        add(row["kind"], row["key"], "tts_sum", seconds)
    attempts = Attempt.objects.filter(finished_at__isnull=False).annotate(
        key=KeyTextTransform("region", "operation__input"))
    for row in attempts.values("operation__kind", "key", "outcome").annotate(n=Count("pk")):
        add(row["operation__kind"], row["key"], f"attempts:{row['outcome']}", row["n"])
    return expected


def in_rollups(grain: str) -> dict:
    """Every figure summed over the periods of a grain, per (kind, key); zeros left out."""
    out: dict = {}
    for (kind, key), figures in rollups.read(grain, by_key=True).items():
        kept = Counter({f: v for f, v in figures.items() if v})
        if kept:
            out[(kind, key)] = kept
    return out


def assert_exact():
    expected = counted_over_the_rows()
    for grain in (Grain.HOUR, Grain.DAY, Grain.TOTAL):
        got = in_rollups(grain)
        assert got.keys() == expected.keys(), grain
        for group, figures in expected.items():
            assert set(got[group]) == set(figures), (grain, group)
            for figure, value in figures.items():
                assert got[group][figure] == pytest.approx(value), (grain, group, figure)


def random_workload(rng: random.Random, user, operations: int = 25, steps: int = 250):
    """Drive operations through the engine's status changes at random, as workers, the
    dispatcher, duplicate deliveries and zombies would."""
    ops = [submit(rng.choice(KINDS), user, {"region": rng.choice(REGIONS)} if rng.random() < .9
                  else {}) for _ in range(operations)]
    running: dict = {}  # pk -> (copy, token, attempt number) of a live claim
    zombies: list = []  # claims whose lease was recovered: their late writes must lose
    for _ in range(steps):
        op = Operation.objects.get(pk=rng.choice(ops).pk)
        move = rng.random()
        if move < 0.08:
            rollups.fold(limit=rng.randint(1, 7))
        elif op.status == Status.PENDING:
            stale = Operation.objects.get(pk=op.pk)
            if op.claim(f"h:{rng.randint(1, 3)}") is not None:
                running[op.pk] = (op, op.lease_token, op.attempt_count)
                assert stale.claim("h:dup") is None  # the duplicate delivery loses
            elif rng.random() < 0.1:
                op.cancel()
        elif op.status == Status.PROCESSING and op.pk in running:
            copy, token, number = running.pop(op.pk)
            if move < 0.45:
                copy.complete(token, number, {"ok": True})
            elif move < 0.6:
                copy.schedule_retry(token, number, TRANSIENT, 0.0)
                Operation.objects.filter(pk=op.pk).update(next_attempt_at=timezone.now())
                Operation.objects.get(pk=op.pk).release_if_due()
            elif move < 0.7:
                copy.fail(token, number, PERMANENT)
            elif move < 0.8:
                copy.hand_back(token, number, Classified(True, "ai_unavailable", "Away.", "503",
                                                         dependency_down=True))
            else:
                Operation.objects.get(pk=op.pk).recover(token)  # the worker died
                zombies.append((copy, token, number))
        elif op.status == Status.WAITING:
            Operation.objects.get(pk=op.pk).unpark() if move < 0.7 else op.give_up_waiting(
                TRANSIENT)
        elif op.status == Status.RETRY_SCHEDULED:
            Operation.objects.filter(pk=op.pk).update(next_attempt_at=timezone.now())
            Operation.objects.get(pk=op.pk).release_if_due()
        elif op.status == Status.FAILED and rng.random() < 0.5:
            try:
                ops.append(retry_operation(op.pk, by=user, channel=rng.choice(
                    ("web", "api", "admin")), staff=True))
            except Exception:  # noqa: BLE001 - refused (limit reached): fine for the property
                pass
        if zombies and rng.random() < 0.1:
            copy, token, number = zombies.pop()
            assert not copy.complete(token, number, {"late": True})  # a zombie's write loses
    return ops


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(6))
def test_rollups_equal_a_count_over_the_rows_after_random_work(seed):
    rng = random.Random(seed)
    user = UserFactory()
    random_workload(rng, user)
    rollups.fold_all()
    assert Operation.objects.filter(finished_at__isnull=False, rolled_up=False).count() == 0
    assert_exact()


@pytest.mark.django_db
def test_rows_changed_behind_the_engines_back_are_counted_again_by_rebuild():
    user = UserFactory()
    random_workload(random.Random(42), user)
    rollups.fold_all()
    # Damage: a figure lost, another doubled, a row's status changed after it was counted.
    Rollup.objects.filter(grain=Grain.TOTAL).order_by("pk").first().delete()
    Rollup.objects.filter(grain=Grain.HOUR).update(value=999)
    changed = Operation.objects.filter(status=Status.COMPLETED).order_by("pk").first()
    Operation.objects.filter(pk=changed.pk).update(status=Status.FAILED)
    out = io.StringIO()
    call_command("rebuild_metrics", stdout=out)
    assert "rebuilt the figures of the whole history" in out.getvalue()
    assert_exact()


@pytest.mark.django_db
def test_pruning_keeps_the_figures_and_rebuild_keeps_the_pruned_periods():
    user = UserFactory()
    random_workload(random.Random(7), user)
    rollups.fold_all()
    before = {grain: in_rollups(grain) for grain in Grain.values}
    live = Operation.objects.filter(finished_at__isnull=True).count()
    deleted = retention.prune(timezone.now() + timedelta(minutes=1))
    assert deleted["operations"] > 0
    # What is not finished stays (with the chains it belongs to), and nothing counted changed.
    assert Operation.objects.filter(finished_at__isnull=True).count() == live
    assert {grain: in_rollups(grain) for grain in Grain.values} == before
    rollups.rebuild()
    assert {grain: in_rollups(grain) for grain in Grain.values} == before


def _claim_and_finish(pks, outcome_seed):
    """A worker thread: claim and finish each operation (some fail, some crash-recover)."""
    rng = random.Random(outcome_seed)
    try:
        for pk in pks:
            op = Operation.objects.get(pk=pk)
            if op.claim("t:1") is None:
                continue
            if rng.random() < 0.8:
                op.complete(op.lease_token, op.attempt_count, {"ok": True})
            else:
                op.fail(op.lease_token, op.attempt_count, PERMANENT)
    finally:
        connections.close_all()  # this thread's own connection, not only a stale one


def _fold_until(stop):
    try:
        while not stop.is_set():
            rollups.fold(limit=50)
    finally:
        connections.close_all()  # this thread's own connection, not only a stale one


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_and_two_folds_count_each_row_once():
    user = UserFactory()
    pks = [submit("diagnostics.flaky", user, {"region": REGIONS[n % 3]}).pk for n in range(600)]
    stop = threading.Event()
    folders = [threading.Thread(target=_fold_until, args=(stop,)) for _ in range(2)]
    workers = [threading.Thread(target=_claim_and_finish, args=(pks[n::3], n)) for n in range(3)]
    for thread in folders + workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    stop.set()
    for thread in folders:
        thread.join(timeout=60)
    rollups.fold_all()
    assert Operation.objects.filter(finished_at__isnull=False).count() == 600
    assert_exact()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_counting_pauses_and_never_waits_while_a_rebuild_holds_the_rollups():
    user = UserFactory()
    op = submit("diagnostics.flaky", user, {})
    op.claim("h:1")
    op.complete(op.lease_token, op.attempt_count, {"ok": True})
    holder = connections.create_connection("default")  # a rebuild in another session
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE operations_rollup IN SHARE ROW EXCLUSIVE MODE")
            assert rollups.fold() == 0  # at once, not after the rebuild
            cursor.execute("ROLLBACK")
    finally:
        holder.close()
    assert rollups.fold() == 2  # the operation and its attempt, once the lock is gone
    assert_exact()

"""Bulk retry under real concurrency (PostgreSQL): racing bulk retries make one child per
parent, and a real cluster starts staggered children no sooner than their spacing allows."""
import pytest
from django.db import connection

from operations.models import Attempt, Channel, Operation, Status
from operations.services import retry_failed, submit
from tests.factories import OperationFactory
from tests.processes import cluster, wait_for
from tests.running import in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_bulk_retries_over_the_same_50_failures_create_exactly_50_children(user):
    failed = [OperationFactory(owner=user, failed=True) for _ in range(50)]

    def bulk(_):
        operations = Operation.objects.filter(pk__in=[op.pk for op in failed]).order_by("?")
        return retry_failed(operations, by=user, channel=Channel.API)

    first, second = in_threads(2, bulk)
    assert len(first["retried"]) + len(second["retried"]) == 50
    assert first["skipped"]["already_retried"] + second["skipped"]["already_retried"] == 50
    assert Operation.objects.filter(parent__in=failed).count() == 50
    assert sorted(Operation.objects.filter(parent__in=failed).values_list(
        "parent_id", flat=True)) == sorted(op.pk for op in failed)


def test_a_real_cluster_starts_staggered_children_no_sooner_than_their_spacing(
        user, settings, tmp_path, running_dispatcher):
    settings.REBOUND = {**settings.REBOUND, "BULK_RETRY_RATE": 5.0}
    failed = [OperationFactory(owner=user, failed=True, input={"succeed_on_retry": 1})
              for _ in range(8)]
    with cluster(tmp_path, REBOUND_WORKERS=2):
        ready = submit("diagnostics.noop", user, {})
        wait_for(lambda: Operation.objects.get(pk=ready.pk).status == Status.COMPLETED, 30,
                 what="the cluster to be ready")
        report = retry_failed(failed, by=user, channel=Channel.WEB)
        children = [Operation.objects.get(pk=pk) for pk in report["retried"]]
        due = {c.pk: c.next_attempt_at or c.created_at for c in children}
        wait_for(lambda: Operation.objects.filter(pk__in=due, status=Status.COMPLETED).count()
                 == len(due), 30, what="every child to complete")
    started = sorted((c.attempts.get().started_at, c.pk) for c in Operation.objects.filter(
        pk__in=due))
    for start, pk in started:
        assert start >= due[pk]  # never before its slot
    slots = sorted(due.values())
    assert all((b - a).total_seconds() >= 0.195 for a, b in zip(slots, slots[1:]))
    first, last = started[0][0], started[-1][0]
    measured_rate = (len(started) - 1) / (last - first).total_seconds()
    assert measured_rate <= 5.0 * 1.1  # the configured rate, give or take delivery latency


def test_five_concurrent_bulk_retries_start_their_children_at_the_rate_in_total(
        user, settings, tmp_path, running_dispatcher):
    rate = 10.0
    settings.REBOUND = {**settings.REBOUND, "BULK_RETRY_RATE": rate}
    groups = [[OperationFactory(owner=user, failed=True, input={"succeed_on_retry": 1})
               for _ in range(8)] for _ in range(5)]
    with cluster(tmp_path, REBOUND_WORKERS=2):
        ready = submit("diagnostics.noop", user, {})
        wait_for(lambda: Operation.objects.get(pk=ready.pk).status == Status.COMPLETED, 30,
                 what="the cluster to be ready")
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")  # the clock slots are kept on
            began = cursor.fetchone()[0]
        reports = in_threads(5, lambda n: retry_failed(groups[n], by=user, channel=Channel.API))
        children = [pk for report in reports for pk in report["retried"]]
        assert len(children) == 40
        wait_for(lambda: Operation.objects.filter(pk__in=children, status=Status.COMPLETED)
                 .count() == 40, 60, what="every child to complete")
    starts = sorted(Attempt.objects.filter(operation__in=children).values_list(
        "started_at", flat=True))
    assert len(starts) == 40
    # However the five interleaved, they share one schedule: the k-th start comes no sooner
    # than k slots after the first, so by any moment no more have started than the rate
    # allows since the bulk retries began. (Each start may come later than its slot, by the
    # dispatcher's tick and a worker's pick-up, so starts that lagged can fall in one second
    # with their neighbours; what never happens is a start ahead of the schedule.)
    for k, start in enumerate(starts):
        assert (start - began).total_seconds() >= k / rate - 0.01, (k, start, began)
    measured = (len(starts) - 1) / (starts[-1] - starts[0]).total_seconds()
    assert measured <= rate * 1.1

"""The whole stack in real processes: a Redis broker that loses a killed worker's task, and
every process killed at once and started again."""
import os
import signal
from contextlib import ExitStack
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from operations.models import TERMINAL, Attempt, Operation, Outcome, Status
from operations.services import submit
from tests.processes import kill_group, managed, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
REDIS = "redis://127.0.0.1:6379/14"


def test_killed_worker_on_the_redis_broker_is_recovered_from_the_database(user, tmp_path):
    redis.from_url(REDIS).flushdb()
    env = {"REDIS_URL": REDIS, "REBOUND_REDELIVER_AFTER": "1"}
    operation = submit("diagnostics.sleep", user, {"seconds": 60, "slow_attempts": [1]})
    # Delivered by the Redis dispatcher's sweep (this test process enqueues elsewhere).
    Operation.objects.filter(pk=operation.pk).update(
        enqueued_at=timezone.now() - timedelta(minutes=1))
    with managed(tmp_path, "qcluster", **env), managed(tmp_path, "dispatcher", **env):
        running = wait_for(lambda: Operation.objects.filter(
            pk=operation.pk, status=Status.PROCESSING).first(), 60, what="first attempt")
        os.kill(int(running.lease_holder.split(":")[1]), signal.SIGKILL)
        wait_for(lambda: Operation.objects.filter(pk=operation.pk, status=Status.COMPLETED)
                 .exists(), 30, what="completion on Redis")
    outcomes = list(Attempt.objects.filter(operation=operation).values_list("outcome", flat=True))
    assert outcomes == [Outcome.CRASHED, Outcome.SUCCEEDED]


def test_the_whole_stack_killed_and_restarted_finishes_every_operation(user, tmp_path):
    operations = (
        [submit("diagnostics.sleep", user, {"seconds": 3, "slow_attempts": [1]}) for _ in range(4)]
        + [submit("diagnostics.flaky", user, {"fail_attempts": [1]}) for _ in range(6)]
        + [submit("diagnostics.noop", user, {}) for _ in range(6)])
    ids = [o.pk for o in operations]
    with ExitStack() as stack:
        processes = [stack.enter_context(managed(tmp_path, command, f"{command}-1"))
                     for command in ("qcluster", "dispatcher")]
        wait_for(lambda: Operation.objects.filter(pk__in=ids, status=Status.PROCESSING).exists(),
                 60, what="work under way")
        for process in processes:
            kill_group(process)  # web, workers and dispatcher gone at once
    assert Operation.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).exists()
    # Deliveries the dead cluster had taken stay locked in its queue: the sweep re-delivers them
    # (after 2 s here instead of the default 30 s).
    with managed(tmp_path, "qcluster", "qcluster-2"), \
            managed(tmp_path, "dispatcher", "dispatcher-2", REBOUND_REDELIVER_AFTER="2"):
        wait_for(lambda: not Operation.objects.filter(pk__in=ids).exclude(
            status__in=TERMINAL).exists(), 90, interval=0.2, what="every operation terminal")
    assert Operation.objects.filter(pk__in=ids, status=Status.COMPLETED).count() == len(ids)
    for operation in Operation.objects.filter(pk__in=ids):
        numbers = list(operation.attempts.values_list("number", flat=True))
        assert numbers == list(range(1, operation.attempt_count + 1))
        assert operation.attempts.filter(outcome__isnull=True).count() == 0


def test_14_deliveries_lost_with_redis_are_delivered_again_once(user, tmp_path):
    client = redis.from_url(REDIS)
    client.flushdb()
    env = {"REDIS_URL": REDIS, "REBOUND_REDELIVER_AFTER": "1"}
    ids = [submit("diagnostics.noop", user, {}).pk for _ in range(5)]
    Operation.objects.filter(pk__in=ids).update(enqueued_at=timezone.now() - timedelta(minutes=1))
    with managed(tmp_path, "dispatcher", "dispatcher-before", **env):
        # One message per worker (the test's processes run one) wakes them all: a worker
        # drains the queue; five messages would be four no-ops.
        wait_for(lambda: client.llen("django_q:rebound:q") >= 1, 20,
                 what="deliveries in Redis")
        assert client.llen("django_q:rebound:q") == 1
    client.flushdb()  # Redis restarted without persistence: the queued deliveries are gone
    with managed(tmp_path, "qcluster", **env), managed(tmp_path, "dispatcher", **env):
        wait_for(lambda: Operation.objects.filter(pk__in=ids, status=Status.COMPLETED).count()
                 == 5, 30, what="all five delivered again")
    assert Attempt.objects.filter(operation_id__in=ids).count() == 5  # none ran twice

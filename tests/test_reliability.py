"""Failures the engine must survive, one test each (RELIABILITY.md numbers in the names)."""
import time
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from django.utils import timezone
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.models import OrmQ

from operations import delivery, dispatcher, runner
from operations.errors import LeaseLost
from operations.kinds import register
from operations.models import Operation, Outcome, Status
from operations.retry_policy import RetryPolicy
from operations.runner import Context
from operations.services import RetryRefused, retry_operation, submit
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db


@register("tests.slow_heartbeat", policy=RetryPolicy(max_attempts=2, time_limit=0.3))
def slow_heartbeat(context):
    while True:
        time.sleep(0.05)
        context.heartbeat()


@register("tests.taken_over")
def taken_over(context):
    # While this attempt runs, another dispatcher presumes it dead and recovers it.
    Operation.objects.get(pk=context.operation.pk).recover(context.token)
    return {"late": True}


def test_05_an_attempt_past_its_time_limit_is_timed_out_and_retried():
    operation = OperationFactory(kind="tests.slow_heartbeat")
    assert runner.run(operation.pk) == "retry_scheduled"
    operation.refresh_from_db()
    assert operation.attempts.get().outcome == Outcome.TIMED_OUT
    assert operation.error_code == "timed_out"


def test_08_a_zombie_workers_late_result_changes_nothing():
    operation = OperationFactory(kind="tests.taken_over")
    assert runner.run(operation.pk) == "lease_lost"
    operation.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED and operation.result is None
    assert operation.attempts.get().outcome == Outcome.CRASHED


def test_13_a_pending_operation_whose_delivery_was_lost_is_delivered_by_the_sweep(user):
    operation = OperationFactory(owner=user, enqueued_at=timezone.now() - timedelta(minutes=5))
    queued = OrmQ.objects.count()
    assert dispatcher.redeliver_lost() == 1
    assert OrmQ.objects.count() == queued + 1
    assert dispatcher.redeliver_lost() == 0  # not again until it is overdue again
    assert runner.run(operation.pk) == "completed"


def test_13_a_recent_pending_operation_is_left_alone(user):
    OperationFactory(owner=user, enqueued_at=timezone.now())
    assert dispatcher.redeliver_lost() == 0


@pytest.fixture
def broker_down(monkeypatch):
    """A real Redis broker client pointed at a port where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = RedisBroker(list_key="rebound-test")
    dead.connection = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                                  retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(delivery, "_broker", dead)


def test_15_broker_down_during_a_retry_post_is_still_202(api, user, broker_down,
                                                         django_capture_on_commit_callbacks):
    failed = OperationFactory(owner=user, failed=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/operations/{failed.pk}/retry", format="json")
    assert response.status_code == 202
    child = Operation.objects.get(parent=failed)
    assert child.status == Status.PENDING and child.enqueued_at is not None  # the sweep's to find


def test_32_a_worker_success_racing_a_manual_retry_has_one_outcome(user):
    operation = OperationFactory(owner=user)
    operation.claim("host:1:1")
    operation.refresh_from_db()
    with pytest.raises(RetryRefused) as refused:
        retry_operation(operation.pk, by=user, channel="api")
    assert refused.value.code == "not_failed"
    operation.complete(operation.lease_token, 1, {"ok": True})
    assert Operation.objects.get(pk=operation.pk).status == Status.COMPLETED
    assert not Operation.objects.filter(parent=operation).exists()


def test_a_handler_that_loses_its_lease_mid_way_stops_writing(user):
    operation = submit("diagnostics.noop", user, {})
    operation.claim("host:1:1")
    operation.refresh_from_db()
    token = operation.lease_token
    operation.recover(token)
    with pytest.raises(LeaseLost):
        Context(operation, token, 1, 60).heartbeat(done=5, force=True)


SQLITE_WRITERS = """
import json, os, sys, threading, django
django.setup()
from django.core.management import call_command
from django.db import connections
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from operations import runner, dispatcher
from operations.models import Operation
from operations.services import submit, retry_operation
user = get_user_model().objects.create(username="writer")
errors = []

def work(n):
    try:
        for i in range(40):
            op = submit("diagnostics.flaky", user, {"fail_attempts": [1], "error": "permanent",
                                                    "succeed_on_retry": 1})
            runner.run(op.pk)
            child = retry_operation(op.pk, by=user, channel="web")
            runner.run(child.pk)
            dispatcher.sweep()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connections.close_all()

threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"errors": errors, "completed": Operation.objects.filter(status="completed").count()}))
"""


@pytest.mark.skipif("postgres" in __import__("os").environ.get("DATABASE_URL", ""),
                    reason="about the embedded SQLite default; PostgreSQL has its own tests")
def test_12_sqlite_with_many_writers_never_says_database_is_locked(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.processes import ROOT

    result = subprocess.run([sys.executable, "-c", SQLITE_WRITERS], cwd=ROOT, timeout=240,
                            capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": "", "REBOUND_VAR_DIR": str(tmp_path),
                                 "DJANGO_SETTINGS_MODULE": "config.settings",
                                 "REBOUND_LOG_LEVEL": "WARNING", "REBOUND_DRAIN_SECONDS": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"errors": [], "completed": 6 * 40}


def test_an_operation_of_a_kind_no_longer_in_the_code_fails_cleanly(web, user):
    operation = OperationFactory(owner=user, kind="removed.kind")
    assert runner.run(operation.pk) == "failed"
    operation.refresh_from_db()
    assert operation.error_code == "internal_error" and "removed.kind" in operation.error_detail
    page = web.get(operation.get_absolute_url())
    assert page.status_code == 200 and "removed.kind" in page.content.decode()
    assert "the stored input for this is gone" in page.content.decode().lower()


def claimed_by(holder, user):
    operation = OperationFactory(owner=user)
    operation.claim(holder)
    return operation


def test_the_sweep_recovers_an_expired_lease(user):
    operation = claimed_by("far-away-host:1:1", user)
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert dispatcher.recover_lost() == 1
    assert Operation.objects.get(pk=operation.pk).status == Status.RETRY_SCHEDULED


def test_the_sweep_recovers_at_once_when_the_holder_on_this_host_is_gone(user):
    from operations.lease import this_host

    operation = claimed_by(f"{this_host()}:999999999:12345", user)  # no such process
    assert dispatcher.recover_lost() == 1
    assert Operation.objects.get(pk=operation.pk).attempts.get().outcome == Outcome.CRASHED


def test_the_sweep_leaves_a_live_holder_alone(user):
    from operations.lease import holder_id

    claimed_by(holder_id(), user)  # this very process, lease fresh
    claimed_by("far-away-host:1:1", user)  # another host, lease fresh
    assert dispatcher.recover_lost() == 0

"""The runner: one delivery, every outcome recorded, the next step decided by the policy."""
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from operations import dispatcher, runner
from operations.kinds import register
from operations.models import Operation, Outcome, Status, Trigger
from operations.retry_policy import RetryPolicy
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db


def flaky(**input):
    return OperationFactory(kind="diagnostics.flaky", input=input)


def make_due(operation):
    Operation.objects.filter(pk=operation.pk).update(
        next_attempt_at=timezone.now() - timedelta(milliseconds=1))
    assert dispatcher.release_due() == 1


def test_successful_run_completes_with_one_attempt():
    operation = flaky()
    assert runner.run(operation.pk) == "completed"
    operation.refresh_from_db()
    assert operation.status == Status.COMPLETED
    assert operation.result == {"succeeded_on_attempt": 1}
    assert [(a.number, a.trigger, a.outcome) for a in operation.attempts.all()] == [
        (1, Trigger.FIRST, Outcome.SUCCEEDED)]


def test_a_sigterm_between_the_claim_and_the_handler_hands_the_operation_back(monkeypatch):
    """A deploy's SIGTERM can come right after a claim, before the handler has started; the
    operation is handed back at the handler's first heartbeat, and the signal is acted on
    once it is settled (django-q2's worker would otherwise die of it mid-claim)."""
    import os
    import signal

    operation = OperationFactory(kind="diagnostics.sleep", input={"seconds": 2})
    claim = runner.fastpath.claim_next

    def claim_then_sigterm(*args, **kwargs):
        claimed = claim(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return claimed

    monkeypatch.setattr(runner.fastpath, "claim_next", claim_then_sigterm)
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        assert runner.run(operation.pk) == "released"
    finally:
        signal.signal(signal.SIGTERM, previous)
        runner.stopping.clear()
    operation.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED
    assert operation.error_code == "worker_stopped"
    assert received == [signal.SIGTERM]  # passed on after the hand-back


def test_transient_error_schedules_the_next_try_after_one_second_plus_jitter():
    operation = flaky(fail_attempts=[1])
    assert runner.run(operation.pk) == "retry_scheduled"
    operation.refresh_from_db()
    delay = operation.attempts.get(number=1).delay_seconds
    assert 1.0 <= delay <= 1.2
    assert operation.status == Status.RETRY_SCHEDULED
    assert operation.next_attempt_at > timezone.now() + timedelta(seconds=0.8)


def test_transient_twice_then_success_completes_on_the_third_try():
    operation = flaky(fail_attempts=[1, 2])
    runner.run(operation.pk)
    make_due(operation)
    runner.run(operation.pk)
    make_due(operation)
    assert runner.run(operation.pk) == "completed"
    attempts = list(Operation.objects.get(pk=operation.pk).attempts.all())
    assert [a.outcome for a in attempts] == [Outcome.TRANSIENT, Outcome.TRANSIENT,
                                             Outcome.SUCCEEDED]
    assert [a.trigger for a in attempts] == [Trigger.FIRST, Trigger.AUTO, Trigger.AUTO]
    assert 1.0 <= attempts[0].delay_seconds <= 1.2
    assert 2.0 <= attempts[1].delay_seconds <= 2.4


def test_spent_budget_fails_the_operation_with_the_last_error():
    operation = flaky(fail_attempts=[1, 2, 3])
    runner.run(operation.pk)
    make_due(operation)
    runner.run(operation.pk)
    make_due(operation)
    assert runner.run(operation.pk) == "failed"
    operation.refresh_from_db()
    assert operation.status == Status.FAILED and operation.error_code == "ai_unavailable"
    assert operation.attempts.count() == 3
    assert operation.attempts.get(number=3).delay_seconds is None


def test_permanent_error_fails_at_once():
    operation = flaky(fail_attempts=[1], error="permanent")
    assert runner.run(operation.pk) == "failed"
    operation.refresh_from_db()
    assert operation.status == Status.FAILED and operation.error_code == "invalid_input"
    assert operation.attempts.get().outcome == Outcome.PERMANENT


def test_retry_after_longer_than_the_backoff_is_honoured():
    operation = flaky(fail_attempts=[1], retry_after=12.5)
    runner.run(operation.pk)
    operation.refresh_from_db()
    assert operation.attempts.get().delay_seconds == 12.5
    assert operation.next_attempt_at > timezone.now() + timedelta(seconds=11)


@register("tests.broken")
def broken(context):
    raise KeyError("a bug")


@register("tests.db_blip", policy=RetryPolicy(max_attempts=2))
def db_blip(context):
    raise OperationalError("server closed the connection unexpectedly")


def test_an_unknown_exception_is_permanent_and_its_detail_stays_on_the_server():
    operation = OperationFactory(kind="tests.broken")
    runner.run(operation.pk)
    operation.refresh_from_db()
    assert operation.status == Status.FAILED and operation.error_code == "internal_error"
    assert "KeyError" in operation.error_detail
    assert "KeyError" not in operation.error_message


def test_a_database_operational_error_is_transient():
    operation = OperationFactory(kind="tests.db_blip")
    assert runner.run(operation.pk) == "retry_scheduled"
    assert Operation.objects.get(pk=operation.pk).error_code == "database_unavailable"


def test_a_duplicate_delivery_of_a_running_operation_is_skipped():
    operation = flaky()
    operation.claim("elsewhere:1:1")
    assert runner.run(operation.pk) == "skipped"
    assert operation.attempts.count() == 1


def test_a_delivery_of_a_cancelled_operation_does_nothing():
    operation = flaky()
    operation.cancel()
    assert runner.run(operation.pk) == "skipped"
    assert operation.attempts.count() == 0


def test_attempt_numbers_are_contiguous_across_auto_retries_and_recovery():
    operation = OperationFactory(kind="diagnostics.flaky", input={"fail_attempts": [1]})
    runner.run(operation.pk)
    make_due(operation)
    operation.refresh_from_db()
    operation.claim("ghost:1:1")
    operation.refresh_from_db()
    operation.recover(operation.lease_token)
    make_due(operation)
    runner.run(operation.pk)
    numbers = list(operation.attempts.values_list("number", flat=True))
    assert numbers == [1, 2, 3]
    assert Operation.objects.get(pk=operation.pk).status == Status.COMPLETED

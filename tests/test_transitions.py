"""Every status change of an Operation, and every refused one."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from operations.errors import Classified
from operations.models import Attempt, Operation, Outcome, Status, Trigger
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db
ERROR = Classified(True, "ai_unavailable", "AI service unavailable.", "503 from upstream")


def claimed():
    operation = OperationFactory()
    attempt = operation.claim("host:1:1")
    return operation, attempt


def test_claim_moves_pending_to_processing_with_a_lease_and_an_attempt():
    operation, attempt = claimed()
    operation.refresh_from_db()
    assert operation.status == Status.PROCESSING
    assert operation.attempt_count == 1
    assert operation.lease_token is not None
    assert operation.lease_expires_at > timezone.now() + timedelta(seconds=25)
    assert attempt.number == 1 and attempt.trigger == Trigger.FIRST and attempt.outcome is None


def test_second_claim_of_the_same_operation_gets_nothing():
    operation, _ = claimed()
    assert Operation.objects.get(pk=operation.pk).claim("host:2:2") is None
    assert Attempt.objects.filter(operation=operation).count() == 1


@pytest.mark.parametrize("status", [Status.PROCESSING, Status.RETRY_SCHEDULED, Status.COMPLETED,
                                    Status.FAILED, Status.CANCELLED])
def test_claim_is_refused_unless_pending(status):
    operation = OperationFactory(status=status)
    assert operation.claim("host:1:1") is None
    assert Operation.objects.get(pk=operation.pk).status == status


def test_complete_writes_result_and_closes_the_attempt():
    operation, attempt = claimed()
    assert operation.complete(operation.lease_token, attempt.number, {"answer": 42})
    operation.refresh_from_db()
    attempt.refresh_from_db()
    assert operation.status == Status.COMPLETED and operation.result == {"answer": 42}
    assert operation.lease_token is None and operation.finished_at is not None
    assert attempt.outcome == Outcome.SUCCEEDED and attempt.finished_at is not None


def test_schedule_retry_sets_due_time_from_the_database_clock():
    operation, attempt = claimed()
    before = timezone.now()
    assert operation.schedule_retry(operation.lease_token, attempt.number, ERROR, 2.0)
    operation.refresh_from_db()
    attempt.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED
    assert before + timedelta(seconds=1.5) < operation.next_attempt_at < before + timedelta(seconds=3)
    assert operation.next_trigger == Trigger.AUTO and operation.error_code == "ai_unavailable"
    assert attempt.outcome == Outcome.TRANSIENT and attempt.delay_seconds == 2.0


def test_fail_keeps_the_error_on_operation_and_attempt():
    operation, attempt = claimed()
    assert operation.fail(operation.lease_token, attempt.number, ERROR)
    operation.refresh_from_db()
    attempt.refresh_from_db()
    assert operation.status == Status.FAILED and operation.error_detail == "503 from upstream"
    assert attempt.outcome == Outcome.PERMANENT and attempt.error_code == "ai_unavailable"


def test_final_write_with_a_stale_token_changes_nothing():
    operation, attempt = claimed()
    assert not operation.complete(uuid.uuid4(), attempt.number, {"late": True})
    assert not operation.fail(uuid.uuid4(), attempt.number, ERROR)
    fresh = Operation.objects.get(pk=operation.pk)
    assert fresh.status == Status.PROCESSING and fresh.result is None
    assert Attempt.objects.get(pk=attempt.pk).outcome is None


def test_heartbeat_extends_the_lease_and_saves_progress_and_checkpoint():
    operation, _ = claimed()
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=1))
    assert operation.heartbeat(operation.lease_token, done=5, total=10, checkpoint={"k": 5})
    fresh = Operation.objects.get(pk=operation.pk)
    assert fresh.lease_expires_at > timezone.now() + timedelta(seconds=25)
    assert (fresh.progress_done, fresh.progress_total, fresh.checkpoint) == (5, 10, {"k": 5})


def test_heartbeat_with_a_stale_token_is_refused():
    operation, _ = claimed()
    assert not operation.heartbeat(uuid.uuid4(), done=1)
    assert Operation.objects.get(pk=operation.pk).progress_done == 0


def test_due_retry_is_released_to_pending_once():
    operation = OperationFactory(scheduled=True,
                                 next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert operation.release_if_due()
    assert not operation.release_if_due()
    assert Operation.objects.get(pk=operation.pk).status == Status.PENDING


def test_retry_not_yet_due_is_not_released():
    operation = OperationFactory(scheduled=True,
                                 next_attempt_at=timezone.now() + timedelta(seconds=30))
    assert not operation.release_if_due()
    assert Operation.objects.get(pk=operation.pk).status == Status.RETRY_SCHEDULED


@pytest.mark.parametrize("status", [Status.PENDING, Status.RETRY_SCHEDULED])
def test_cancel_stops_waiting_operations(status):
    operation = OperationFactory(status=status)
    assert operation.cancel()
    assert Operation.objects.get(pk=operation.pk).status == Status.CANCELLED


@pytest.mark.parametrize("status", [Status.PROCESSING, Status.COMPLETED, Status.FAILED,
                                    Status.CANCELLED])
def test_cancel_is_refused_for_running_or_finished_operations(status):
    operation = OperationFactory(status=status)
    assert not operation.cancel()
    assert Operation.objects.get(pk=operation.pk).status == status


def test_recover_schedules_a_crashed_attempt_at_once_and_records_it():
    operation, attempt = claimed()
    assert operation.recover(operation.lease_token)
    operation.refresh_from_db()
    attempt.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED
    assert operation.next_trigger == Trigger.RECOVERED and operation.error_code == "worker_lost"
    assert attempt.outcome == Outcome.CRASHED


def test_recover_fails_a_poison_operation_after_repeated_crashes():
    operation = OperationFactory(kind="diagnostics.sleep")
    for _ in range(3):
        Operation.objects.filter(pk=operation.pk).update(status=Status.PENDING)
        operation.claim("host:1:1")
        operation.refresh_from_db()
        operation.recover(operation.lease_token)
    operation.refresh_from_db()
    assert operation.status == Status.FAILED and operation.error_code == "crashed_repeatedly"
    assert list(operation.attempts.values_list("outcome", flat=True)) == [Outcome.CRASHED] * 3


def test_recover_after_time_limit_records_timed_out():
    operation, attempt = claimed()
    assert operation.recover(operation.lease_token, timed_out=True)
    attempt.refresh_from_db()
    assert attempt.outcome == Outcome.TIMED_OUT
    assert Operation.objects.get(pk=operation.pk).error_code == "timed_out"


def test_recover_with_a_stale_token_changes_nothing():
    operation, attempt = claimed()
    assert not operation.recover(uuid.uuid4())
    assert Operation.objects.get(pk=operation.pk).status == Status.PROCESSING


def test_release_hands_a_running_operation_back_due_now_without_a_crash():
    operation, attempt = claimed()
    assert operation.release(operation.lease_token, attempt.number)
    operation.refresh_from_db()
    attempt.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED and operation.next_attempt_at <= timezone.now()
    assert operation.next_trigger == Trigger.RECOVERED and operation.error_code == "worker_stopped"
    assert attempt.outcome == Outcome.TRANSIENT

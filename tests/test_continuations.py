"""Continuations: a kind's on_success / on_failure run once after the final state is committed,
and the step they start exists once however often it is asked for (dedupe keys)."""
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from operations import dispatcher, followups, runner
from operations.errors import PermanentError
from operations.kinds import Completion, register
from operations.models import Notification, Operation, Status
from operations.services import submit
from tests.running import in_threads

CALLS = []


def start_step_two(operation):
    CALLS.append(("success", operation.pk))
    if operation.input.get("continuation_raises"):
        raise RuntimeError("continuation bug")
    submit("tests.step_two", operation.owner, {"item": operation.input["item"]},
           dedupe_key=f"tests:step-two:{operation.input['item']}")


def note_failure(operation):
    CALLS.append(("failure", operation.pk))


@register("tests.step_one", on_success=start_step_two, on_failure=note_failure)
def step_one(context):
    if context.input.get("fail"):
        raise PermanentError("invalid_input", "told to fail")
    return {"item": context.input["item"]}


@register("tests.step_two")
def step_two(context):
    return {}


@register("tests.writes_output")
def writes_output(context):
    """Its output (here a row keyed by the operation: a no-op operation with a dedupe key) is
    written in the completion's transaction."""
    return Completion({"written": True}, write=lambda: submit(
        "diagnostics.noop", context.operation.owner, {},
        dedupe_key=f"tests:output:{context.operation.pk}"))


@pytest.fixture(autouse=True)
def calls():
    CALLS.clear()
    yield CALLS


def step_twos(item="a"):
    return Operation.objects.filter(kind="tests.step_two", input__item=item)


@pytest.mark.django_db
class TestOnce:
    def test_on_success_starts_the_next_step_after_the_completion(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a"})
        assert runner.run(first.pk) == "completed"
        assert calls == [("success", first.pk)] and step_twos().count() == 1
        assert Operation.objects.get(pk=first.pk).followup_due is False

    def test_a_duplicate_delivery_runs_the_continuation_once(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a"})
        assert runner.run(first.pk) == "completed"
        assert runner.run(first.pk) == "skipped"
        assert followups.run(first.pk) is False
        assert calls == [("success", first.pk)] and step_twos().count() == 1

    def test_the_same_dedupe_key_twice_returns_the_operation_that_exists(self, user):
        one = submit("tests.step_two", user, {"item": "a"}, dedupe_key="k")
        two = submit("tests.step_two", user, {"item": "b"}, dedupe_key="k")
        assert one.pk == two.pk and Operation.objects.filter(dedupe_key="k").count() == 1
        assert two.input == {"item": "a"}  # the first submission's operation, unchanged

    def test_on_failure_runs_once_when_the_operation_fails_for_good(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a", "fail": True})
        assert runner.run(first.pk) == "failed"
        followups.run(first.pk)
        assert calls == [("failure", first.pk)] and not step_twos().exists()

    def test_a_zombie_completion_neither_writes_nor_continues(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a"})
        first.claim("host:1:1")
        zombie_token = first.lease_token
        assert first.recover(zombie_token)  # presumed dead: the lease is taken over
        assert first.complete(zombie_token, 1, {"late": True}) is False
        first.refresh_from_db()
        assert first.status == Status.RETRY_SCHEDULED and first.followup_due is False
        assert followups.run(first.pk) is False and calls == []

    def test_a_continuation_that_raises_stays_due_and_the_sweep_runs_it_later(self, user,
                                                                               calls):
        first = submit("tests.step_one", user, {"item": "a", "continuation_raises": True})
        assert runner.run(first.pk) == "completed"
        assert Operation.objects.get(pk=first.pk).followup_due is True
        Operation.objects.filter(pk=first.pk).update(
            input={"item": "a"}, updated_at=timezone.now() - timedelta(seconds=10))
        assert dispatcher.sweep()["followups"] == 1
        assert step_twos().count() == 1 and len(calls) == 2

    def test_follow_ups_of_a_worker_that_died_after_its_final_write_are_run_by_the_sweep(
            self, user, calls):
        first = submit("tests.step_one", user, {"item": "a"})
        first.claim("host:1:1")
        assert first.complete(first.lease_token, 1, {})  # ... and the worker dies here
        assert Operation.objects.get(pk=first.pk).followup_due is True
        assert dispatcher.sweep()["followups"] == 0  # the worker may still be at it
        Operation.objects.filter(pk=first.pk).update(
            updated_at=timezone.now() - timedelta(seconds=10))
        assert dispatcher.sweep()["followups"] == 1
        assert step_twos().count() == 1 and calls == [("success", first.pk)]

    def test_a_completion_write_happens_with_the_completion(self, user):
        operation = submit("tests.writes_output", user, {})
        assert runner.run(operation.pk) == "completed"
        assert Operation.objects.filter(dedupe_key=f"tests:output:{operation.pk}").count() == 1

    def test_a_completion_write_never_happens_for_a_zombie(self, user):
        operation = submit("tests.writes_output", user, {})
        operation.claim("host:1:1")
        token = operation.lease_token
        operation.recover(token)
        wrote = []
        assert operation.complete(token, 1, {}, also=lambda: wrote.append(1)) is False
        assert wrote == []

    def test_a_completion_write_that_fails_fails_the_attempt_not_the_worker(self, user):
        operation = submit("diagnostics.noop", user, {})
        operation.claim("host:1:1")

        def broken():
            raise IntegrityError("duplicate output")

        with pytest.raises(IntegrityError):
            operation.complete(operation.lease_token, 1, {}, also=broken)
        operation.refresh_from_db()
        assert operation.status == Status.PROCESSING  # rolled back with the write


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestRaces:
    def test_two_completions_at_the_same_moment_start_the_next_step_once(self, user, calls):
        firsts = [submit("tests.step_one", user, {"item": "shared"}) for _ in range(2)]
        outcomes = in_threads(2, lambda i: runner.run(firsts[i].pk))
        assert outcomes == ["completed", "completed"] and len(calls) == 2
        assert step_twos("shared").count() == 1

    def test_one_operation_delivered_twice_at_once_runs_and_continues_once(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a"})
        outcomes = in_threads(2, lambda i: runner.run(first.pk))
        assert sorted(outcomes) == ["completed", "skipped"]
        assert first.attempts.count() == 1
        assert calls == [("success", first.pk)] and step_twos().count() == 1

    def test_follow_ups_asked_for_by_two_processes_run_once(self, user, calls):
        first = submit("tests.step_one", user, {"item": "a", "fail": True})
        first.claim("host:1:1")
        first.fail(first.lease_token, 1, PermanentError("invalid_input", "x"))
        ran = in_threads(8, lambda i: followups.run(first.pk))
        assert ran.count(True) == 1 and calls == [("failure", first.pk)]
        assert Notification.objects.filter(operation=first).count() == 1

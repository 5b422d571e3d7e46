"""Gates: an outage of a dependency opens its gate, the work that needs it waits without
spending attempts, one probe at a time finds out when the service is back, and the waiting work
is released gradually. Times are moved by writing the database's timestamps, never by sleeping."""
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import dispatcher, gates, runner
from operations.errors import PermanentError, TransientError
from operations.kinds import register
from operations.models import Attempt, Gate, GateEvent, Notification, Operation, Status
from operations.services import cancel_operation, submit
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
SERVICE = "tests:service"
DOWN = {"answer": None}  # what the service does: None = answers, else an exception to raise


@register("tests.calls_service", dependency=lambda input: SERVICE)
def calls_service(context):
    if DOWN["answer"] is not None:
        raise DOWN["answer"]
    return {"ok": True}


@pytest.fixture(autouse=True)
def service_answers():
    DOWN["answer"] = None
    yield
    DOWN["answer"] = None


def away():
    return TransientError("ai_unavailable", "HTTP 503", dependency_down=True)


def work(user, n=1) -> list[Operation]:
    return [submit("tests.calls_service", user, {"n": i}) for i in range(n)]


def gate() -> Gate:
    return Gate.objects.get(key=SERVICE)


def run(operation) -> str:
    gates.forget()  # as a worker does at least once a second
    return runner.run(operation.pk)


def past(**fields):
    """Move a gate's times into the past: its cool-down (or hold) is over."""
    Gate.objects.filter(key=SERVICE).update(**fields)


def test_an_operation_names_the_service_it_needs(user):
    [operation] = work(user)
    assert operation.dependency == SERVICE


def test_five_away_failures_in_a_row_open_the_gate_and_the_fifth_waits(user):
    DOWN["answer"] = away()
    operations = work(user, 5)
    assert [run(op) for op in operations] == ["retry_scheduled"] * 4 + ["waiting"]
    assert gate().state == "open"
    fifth = Operation.objects.get(pk=operations[4].pk)
    assert fifth.status == Status.WAITING and fifth.waiting_since is not None
    assert fifth.attempts_waived == 1 and fifth.attempts_spent == 0
    assert fifth.attempts.get().dependency_down  # the attempt is recorded as it happened
    # The four scheduled before the gate opened wait too, from the moment it opened.
    assert set(Operation.objects.values_list("status", flat=True)) == {Status.WAITING}
    assert GateEvent.objects.get().state == "open"


def test_half_of_ten_recent_calls_failing_opens_the_gate_and_four_of_ten_does_not(user):
    operations = work(user, 10)
    for i, operation in enumerate(operations[:9]):
        DOWN["answer"] = away() if i % 2 else None  # 4 of 9 fail, never 5 in a row
        run(operation)
    assert not Gate.objects.filter(key=SERVICE).exclude(state="closed").exists()
    DOWN["answer"] = away()
    assert run(operations[9]) == "waiting"  # 5 of 10 in the last 30 s
    assert gate().state == "open"


def test_calls_outside_the_30_second_window_do_not_count(user):
    operations = work(user, 10)
    for i, operation in enumerate(operations[:9]):
        DOWN["answer"] = away() if i % 2 else None
        run(operation)
    Attempt.objects.update(finished_at=timezone.now() - timedelta(seconds=31))
    DOWN["answer"] = away()
    assert run(operations[9]) == "retry_scheduled"


def test_your_request_is_wrong_never_touches_a_gate(user):
    DOWN["answer"] = PermanentError("ai_rejected", "HTTP 400")
    assert [run(op) for op in work(user, 8)] == ["failed"] * 8
    assert not Gate.objects.exclude(state="closed").exists()


@pytest.fixture
def opened(user):
    """The service went down: its gate is open, and six operations wait for it."""
    DOWN["answer"] = away()
    operations = work(user, 6)
    for operation in operations[:5]:
        run(operation)
    gates.tick()  # parks the sixth, still pending
    assert gate().state == "open"
    assert Operation.objects.filter(status=Status.WAITING).count() == 6
    return operations


def test_nothing_calls_an_open_gate(user, opened):
    late = submit("tests.calls_service", user, {})
    assert run(late) == "skipped"  # the worker does not claim it
    assert Operation.objects.get(pk=late.pk).attempt_count == 0
    gates.tick()
    assert Operation.objects.get(pk=late.pk).status == Status.WAITING


def test_after_the_cool_down_exactly_one_probe_goes_through(opened):
    assert gates.tick()["probes"] == 0  # the cool-down (5 s) has not passed
    past(open_until=timezone.now() - timedelta(seconds=1))
    assert gates.tick()["probes"] == 1 and gates.tick()["probes"] == 0
    assert gate().state == "half_open"
    assert list(Operation.objects.filter(status=Status.PENDING).values_list("pk", flat=True)) == [
        gate().probe]


def test_a_probe_that_succeeds_closes_the_gate_and_releases_the_rest_at_a_slow_start(opened):
    past(open_until=timezone.now() - timedelta(seconds=1))
    gates.tick()
    DOWN["answer"] = None
    probe = Operation.objects.get(pk=gate().probe)
    spent = probe.attempts_spent  # what it spent before the gate opened
    assert run(probe) == "completed"
    assert gate().state == "closed"
    assert Operation.objects.get(pk=probe.pk).attempts_spent == spent + 1  # its one good call
    first = gates.tick()["released"]
    assert 1 <= first <= 2  # at first, a few (REBOUND_GATE_SLOW_START, 2 a second)
    past(since=timezone.now() - timedelta(seconds=2))
    assert gates.tick()["released"] == 5 - first  # then doubling: 7 in all may go by now
    assert not Operation.objects.filter(status=Status.WAITING).exists()


def test_a_probe_that_fails_opens_the_gate_again_for_twice_as_long(opened):
    past(open_until=timezone.now() - timedelta(seconds=1))
    gates.tick()
    probe = Operation.objects.get(pk=gate().probe)
    spent = probe.attempts_spent
    assert run(probe) == "waiting"
    reopened = gate()
    assert reopened.state == "open" and reopened.probe is None
    assert reopened.cooldown_seconds == 10.0
    assert reopened.open_until >= timezone.now() + timedelta(seconds=9)
    for _ in range(5):  # and so on, to at most 30 s
        past(open_until=timezone.now() - timedelta(seconds=1))
        gates.tick()
        run(Operation.objects.get(pk=gate().probe))
    assert gate().cooldown_seconds == 30.0
    assert Operation.objects.get(pk=probe.pk).attempts_spent == spent  # probes cost nothing


def test_waiting_past_the_limit_fails_with_dependency_down_and_tells_the_owner(user, opened,
                                                                               settings):
    settings.REBOUND = {**settings.REBOUND, "WAIT_LIMIT_SECONDS": 3600}
    Operation.objects.update(waiting_since=timezone.now() - timedelta(seconds=3601))
    assert gates.tick()["expired"] == 6
    operation = Operation.objects.get(pk=opened[0].pk)
    assert operation.status == Status.FAILED and operation.error_code == "dependency_down"
    assert Notification.objects.filter(operation=operation, event="failed").exists()


def test_no_owner_notification_while_work_waits(opened):
    assert not Notification.objects.exists()


def test_a_waiting_operation_can_be_cancelled(user, opened):
    cancelled = cancel_operation(opened[0].pk, by=user)
    assert cancelled.status == Status.CANCELLED


def test_a_cancelled_probe_makes_way_for_another(user, opened):
    past(open_until=timezone.now() - timedelta(seconds=1))
    gates.tick()
    first = gate().probe
    cancel_operation(first, by=user)
    gates.tick()  # the probe ended without an answer: open again, due at once
    gates.tick()
    assert gate().state == "half_open" and gate().probe != first


def test_waiting_work_survives_a_dispatcher_restart(opened):
    gates.forget()  # a new dispatcher process knows nothing but what the database says
    past(open_until=timezone.now() - timedelta(seconds=1))
    assert dispatcher.sweep()["gates"]["probes"] == 1


def test_staff_hold_a_gate_with_a_reason_and_release_it(user, opened):
    staff = UserFactory(username="root", is_staff=True)
    gates.hold(SERVICE, by=staff, reason="provider maintenance 14:00-15:00")
    past(open_until=timezone.now() - timedelta(seconds=1))
    assert gates.tick()["probes"] == 0  # held: no probe
    assert gates.release(SERVICE, by=staff, reason="maintenance over")
    assert gate().state == "closed" and not gate().held
    events = list(GateEvent.objects.filter(by=staff).order_by("at", "id").values_list(
        "state", "reason"))
    assert events == [("open", "held by staff: provider maintenance 14:00-15:00"),
                      ("closed", "released by staff: maintenance over")]
    assert gates.tick()["released"] >= 1


def test_a_hold_parks_work_that_was_about_to_run(user):
    pending = work(user, 2)
    gates.hold(SERVICE, by=UserFactory(username="root", is_staff=True), reason="maintenance")
    assert {Operation.objects.get(pk=op.pk).status for op in pending} == {Status.WAITING}


def test_a_probe_that_gets_a_refusal_still_finds_the_service_back(opened):
    past(open_until=timezone.now() - timedelta(seconds=1))
    gates.tick()
    DOWN["answer"] = PermanentError("ai_rejected", "HTTP 400")  # an answer, if not a good one
    assert run(Operation.objects.get(pk=gate().probe)) == "failed"
    assert gate().state == "closed"


def test_gates_can_be_turned_off(user, settings):
    settings.REBOUND = {**settings.REBOUND, "GATES": False}
    DOWN["answer"] = away()
    assert [run(op) for op in work(user, 6)] == ["retry_scheduled"] * 6
    assert not Gate.objects.exclude(state="closed").exists()


def test_a_probe_parked_again_by_a_dispatcher_with_a_stale_view_is_sent_again(opened):
    past(open_until=timezone.now() - timedelta(seconds=1))
    gates.tick()
    probe = gate().probe
    Operation.park(SERVICE)  # what a dispatcher that still saw the gate open does
    assert Operation.objects.get(pk=probe).status == Status.WAITING
    gates.tick()
    assert gate().state == "half_open" and gate().probe == probe and gate().probes == 1
    assert Operation.objects.get(pk=probe).status == Status.PENDING

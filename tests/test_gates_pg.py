"""Gates under real concurrency (PostgreSQL): several dispatchers, in their own processes,
never send two probes through one half-open gate; racing ticks in threads send one."""
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import gates
from operations.models import Gate, Host, Operation, Status
from operations.services import submit
from tests.processes import managed, wait_for
from tests.running import in_threads
from tests.test_gates import SERVICE, away, DOWN, run  # noqa: F401 - registers the kind

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def opened_long_ago(user):
    """An open gate whose cool-down has passed, and ten operations waiting for it."""
    DOWN["answer"] = away()
    operations = [submit("tests.calls_service", user, {"n": i}) for i in range(10)]
    for operation in operations[:5]:
        run(operation)
    gates.tick()
    DOWN["answer"] = None
    Gate.objects.filter(key=SERVICE).update(open_until=timezone.now() - timedelta(seconds=1))
    assert Operation.objects.filter(status=Status.WAITING).count() == 10
    return operations


def test_racing_ticks_send_one_probe(opened_long_ago):
    results = in_threads(8, lambda _: gates.tick()["probes"])
    assert sum(results) == 1
    gate = Gate.objects.get(key=SERVICE)
    assert gate.state == "half_open"
    assert Operation.objects.exclude(status=Status.WAITING).count() == 1


def test_three_dispatcher_processes_send_one_probe(opened_long_ago, tmp_path):
    # No worker runs, so the probe stays pending: a second probe would show as a second
    # operation out of `waiting`.
    with managed(tmp_path, "dispatcher", "d1", REBOUND_HOST_ID="dispatch-1"), \
            managed(tmp_path, "dispatcher", "d2", REBOUND_HOST_ID="dispatch-2"), \
            managed(tmp_path, "dispatcher", "d3", REBOUND_HOST_ID="dispatch-3"):
        wait_for(lambda: Gate.objects.get(key=SERVICE).state == "half_open", 30,
                 what="a probe")
        probed_at = timezone.now()
        # Every dispatcher has ticked several times since (they beat once a second).
        wait_for(lambda: Host.objects.filter(
            name__in=["dispatch-1", "dispatch-2", "dispatch-3"],
            dispatcher_beat_at__gt=probed_at + timedelta(seconds=2)).count() == 3, 30,
            what="three dispatchers to tick past the probe")
    assert Operation.objects.exclude(status=Status.WAITING).count() == 1
    assert Gate.objects.get(key=SERVICE).probes == 1


def test_waiting_work_survives_a_dispatcher_killed_mid_outage_and_is_released_after(
        opened_long_ago, tmp_path):
    with managed(tmp_path, "dispatcher", "first", REBOUND_HOST_ID="dispatch-a"):
        wait_for(lambda: Gate.objects.get(key=SERVICE).state == "half_open", 30,
                 what="a probe")
    # The first dispatcher is SIGKILLed: the gate and the waiting work are rows, not memory.
    probe = Operation.objects.get(pk=Gate.objects.get(key=SERVICE).probe)
    assert run(probe) == "completed"  # the service is back (a worker ran the probe)
    assert Gate.objects.get(key=SERVICE).state == "closed"
    assert Operation.objects.filter(status=Status.WAITING).count() == 9
    with managed(tmp_path, "dispatcher", "second", REBOUND_HOST_ID="dispatch-b"):
        wait_for(lambda: not Operation.objects.filter(status=Status.WAITING).exists(), 30,
                 what="the waiting work to be released")
    assert Operation.objects.filter(status=Status.PENDING).count() == 9

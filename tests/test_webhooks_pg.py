"""Webhooks with real processes: a django-q2 cluster and the dispatcher deliver to a receiver
process that goes away and comes back, or whose worker is killed mid-delivery."""
import os
import signal

import pytest
from django.db import transaction

from operations import events
from operations.models import Gate, Operation, Status
from tests.processes import cluster, managed, wait_for
from tests.stack import free_port
from tests.webhooks_helpers import receiver_process
from webhooks import services
from webhooks.models import Delivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FAST = dict(REBOUND_WEBHOOK_FIRST_RETRY=0.2, REBOUND_GATE_COOLDOWN=0.5,
            REBOUND_GATE_COOLDOWN_MAX=1, REBOUND_GATE_SLOW_START=20, REBOUND_DISPATCH_TICK=0.05)



def emit(user, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction.atomic():
            events.emit("job.finished", user.pk,
                        {"job": {"id": i, "title": f"job {i}", "counts": {"completed": 1}}},
                        key=f"tests:job.finished:{i}")


def delivered() -> int:
    return Delivery.objects.filter(delivered_at__isnull=False).count()


def test_a_receiver_down_for_a_while_gets_the_backlog_in_order_once_back(user, tmp_path):
    port = free_port()
    endpoint = services.create_endpoint(user, url=f"http://127.0.0.1:{port}/hook",
                                        event_types=["job.finished"])
    gate = Gate.objects.filter(key=endpoint.dependency)
    with cluster(tmp_path, **FAST), managed(tmp_path, "dispatcher", **FAST):
        emit(user, 30)  # nobody listens on the port: connections are refused
        wait_for(lambda: gate.filter(state="open").exists(), 30, what="the endpoint's gate")
        wait_for(lambda: Operation.objects.filter(kind="webhooks.deliver",
                                                  status=Status.WAITING).count() >= 25, 30,
                 what="deliveries waiting behind the gate")
        with receiver_process(port) as receiver:
            receiver.mode("ok", secrets=[endpoint.secret])
            wait_for(lambda: delivered() == 30, 60, what="every delivery")
            seen = receiver.deliveries()
    assert all(s["verified"] and s["answered"] == 204 for s in seen)
    ids = [s["id"] for s in seen]
    assert len(ids) == len(set(ids)) == 30  # nothing lost, nothing twice
    # Oldest first, per endpoint (one worker here; with several, neighbours may overlap).
    assert [s["data"]["job"]["id"] for s in seen] == list(range(30))
    attempts = sum(Operation.objects.filter(kind="webhooks.deliver").values_list(
        "attempt_count", flat=True))
    # The outage cost a few attempts (the 5 failures in a row that opened the gate, then one
    # probe at a time), not a flood: at most one attempt more per failure it took to notice.
    probes = gate.get().probes
    assert attempts - 30 <= 5 + probes, (attempts, probes)
    assert not Operation.objects.filter(kind="webhooks.deliver").exclude(
        status=Status.COMPLETED).exists()


def test_a_delivery_repeated_after_a_crash_keeps_its_webhook_id(user, tmp_path):
    with receiver_process() as receiver:
        endpoint = services.create_endpoint(user, url=receiver.url,
                                            event_types=["job.finished"])
        receiver.mode("hang", secrets=[endpoint.secret])
        with managed(tmp_path, "dispatcher", **FAST):
            with cluster(tmp_path, name="first", REBOUND_LEASE_SECONDS=30, **FAST):
                emit(user, 1)
                wait_for(lambda: len(receiver.deliveries()) == 1, 30, what="the first try")
                holder = Operation.objects.get(kind="webhooks.deliver").lease_holder
                os.kill(int(holder.split(":")[1]), signal.SIGKILL)  # mid-delivery
                receiver.mode("ok")
                wait_for(lambda: delivered() == 1, 30, what="the delivery after the crash")
        seen = receiver.deliveries()
    assert len(seen) == 2 and seen[0]["id"] == seen[1]["id"]
    assert [s["answered"] for s in seen] == [0, 204]
    operation = Operation.objects.get(kind="webhooks.deliver")
    assert [a.outcome for a in operation.attempts.all()] == ["crashed", "succeeded"]

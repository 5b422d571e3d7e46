"""Hosts that vanish are noticed in seconds: a host whose processes all went silent for
REBOUND_HOST_DEAD_AFTER has its operations recovered by another host's dispatcher (counted as
a crash, fenced); a host that stopped on purpose, or whose workers still beat, is left alone."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import dispatcher, runner
from operations.kinds import register
from operations.lease import this_host
from operations.models import Host, Operation, Outcome, Status
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db


def held_by(user, host: str) -> Operation:
    operation = OperationFactory(owner=user)
    assert operation.claim(f"{host}:4242:1")
    return operation


def silent_for(host: str, seconds: float, **extra):
    Host.objects.update_or_create(name=host, defaults={
        "started_at": timezone.now() - timedelta(hours=1),
        "beat_at": timezone.now() - timedelta(seconds=seconds), **extra})


def test_a_host_silent_for_longer_than_dead_after_is_recovered_at_once(user):
    operation = held_by(user, "host-a")
    silent_for("host-a", 6)
    assert dispatcher.recover_lost() == 1  # the 30 s lease has not expired
    operation.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED and operation.error_code == "worker_lost"
    assert operation.attempts.get().outcome == Outcome.CRASHED


def test_a_host_heard_from_recently_keeps_its_operations(user):
    operation = held_by(user, "host-a")
    silent_for("host-a", 2)
    assert dispatcher.recover_lost() == 0
    assert Operation.objects.get(pk=operation.pk).status == Status.PROCESSING


def test_a_host_that_stopped_on_purpose_is_not_taken_for_dead(user):
    operation = held_by(user, "host-a")
    silent_for("host-a", 60, stopped_at=timezone.now() - timedelta(seconds=59))
    assert dispatcher.recover_lost() == 0
    assert Operation.objects.get(pk=operation.pk).status == Status.PROCESSING


def test_a_new_beat_after_a_stop_makes_the_host_count_again(user):
    silent_for("host-a", 60, stopped_at=timezone.now())
    Host.beat("host-a")
    assert Host.objects.get(name="host-a").stopped_at is None


def test_an_unknown_host_is_left_to_its_lease(user):
    operation = held_by(user, "never-seen")
    assert dispatcher.recover_lost() == 0
    assert Operation.objects.get(pk=operation.pk).status == Status.PROCESSING


def test_dead_after_is_a_setting(user, settings):
    settings.REBOUND = {**settings.REBOUND, "HOST_DEAD_AFTER_SECONDS": 20.0}
    held_by(user, "host-a")
    silent_for("host-a", 6)
    assert dispatcher.recover_lost() == 0


@register("tests.host_known")
def host_known(context):
    HOST_SEEN["known"] = Host.objects.filter(name=this_host()).exists()
    return {}


HOST_SEEN = {}


def test_a_worker_says_its_host_is_alive_before_it_claims_anything(user, monkeypatch):
    monkeypatch.setattr(runner, "_host_beat_at", float("-inf"))
    Host.objects.all().delete()
    operation = OperationFactory(owner=user, kind="tests.host_known")
    assert runner.run(operation.pk) == "completed"
    assert HOST_SEEN == {"known": True}  # before the lease keeper's first beat (1 s later)


def test_the_lease_keeper_survives_a_pass_that_fails_unexpectedly(user, monkeypatch):
    operation = OperationFactory(owner=user)
    operation.claim("host:1:1")
    operation.refresh_from_db()
    keeper = runner.LeaseKeeper()

    def broken(force=False):
        raise RuntimeError("not a database error")

    monkeypatch.setattr(runner, "host_alive", broken)
    keeper._keep([[operation, operation.lease_token, 60.0, 0.0, 0.0]], extend_every=1.0)
    monkeypatch.undo()
    before = Operation.objects.get(pk=operation.pk).lease_expires_at
    keeper._keep([[operation, operation.lease_token, 60.0, time.monotonic(), 0.0]],
                 extend_every=0.0)  # the next pass works again
    assert Operation.objects.get(pk=operation.pk).lease_expires_at > before

"""On the Redis broker a draining worker counts as woken: a producer sends no message while the
messages waiting and the workers awake are enough to wake every worker, and a worker going to
sleep never leaves behind what was committed while it was counted awake. (A real Redis on
loopback, its database 13.)"""
import time

import pytest
import redis
from django_q.brokers.redis_broker import Redis as RedisBroker

from operations import delivery, dispatcher, runner
from operations.lease import this_host
from operations.models import Operation, Status
from operations.services import submit


@pytest.fixture
def broker(monkeypatch, settings):
    broker = RedisBroker(list_key="rebound-test-awake")
    broker.connection = redis.Redis.from_url("redis://127.0.0.1:6379/13")
    awake_key, nudge_key = f"{broker.list_key}:awake", f"{broker.list_key}:nudge"
    broker.connection.delete(broker.list_key, awake_key, nudge_key)
    monkeypatch.setattr(delivery, "_broker", broker)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 5.0}
    broker.awake_key, broker.nudge_key = awake_key, nudge_key
    yield broker
    broker.connection.delete(broker.list_key, awake_key, nudge_key)


def messages(broker) -> int:
    return broker.connection.llen(broker.list_key)


def a_dead_holder() -> str:
    return f"{this_host()}:{2**22 + 12345}:1"  # above Linux's largest process id


@pytest.mark.django_db(transaction=True)
def test_a_worker_awake_counts_as_woken(user, broker):
    delivery.awake("host-a:1:1")
    submit("diagnostics.noop", user, {})
    assert messages(broker) == 1  # two workers: one awake, one woken by this message
    submit("diagnostics.noop", user, {})
    assert messages(broker) == 1  # both will look at the queue after this commit
    delivery.asleep("host-a:1:1")
    submit("diagnostics.noop", user, {})
    assert messages(broker) == 2


def one_worker_holding_a_delivery(user, broker, settings):
    """One worker, and an operation whose message it has taken (the test then runs it)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    first = submit("diagnostics.noop", user, {})
    broker.connection.delete(broker.list_key)
    return first


@pytest.mark.django_db(transaction=True)
def test_a_worker_going_to_sleep_runs_what_was_committed_while_it_was_awake(
        user, broker, settings, monkeypatch):
    first = one_worker_holding_a_delivery(user, broker, settings)
    late, really_asleep = [], delivery.asleep

    def asleep_just_after_a_submit(holder):
        # The worker has found the queue empty and is about to say it sleeps: a producer
        # commits now, counts it awake and sends nothing.
        if not late:
            late.append(submit("diagnostics.noop", user, {}))
            assert messages(broker) == 0
        really_asleep(holder)

    monkeypatch.setattr(delivery, "asleep", asleep_just_after_a_submit)
    assert runner.run(first.pk) == "completed"
    assert Operation.objects.get(pk=late[0].pk).status == Status.COMPLETED
    assert messages(broker) == 0
    assert broker.connection.zcard(broker.awake_key) == 0


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_counts_as_awake_no_longer_than_its_word(user, broker):
    broker.connection.zadd(broker.awake_key, {a_dead_holder(): time.time() - 0.5})  # expired
    delivery.awake("host-a:1:1")
    submit("diagnostics.noop", user, {})
    assert messages(broker) == 1  # counted: the live worker and this message, not the dead


@pytest.mark.django_db(transaction=True)
def test_the_dispatcher_forgets_a_dead_worker_when_it_recovers_its_operation(user, broker):
    holder = a_dead_holder()
    operation = submit("diagnostics.noop", user, {})
    assert Operation.objects.get(pk=operation.pk).claim(holder)
    delivery.awake(holder)
    assert broker.connection.zscore(broker.awake_key, holder) is not None
    assert dispatcher.recover_lost() == 1
    assert broker.connection.zscore(broker.awake_key, holder) is None


@pytest.mark.django_db(transaction=True)
def test_a_worker_with_nothing_to_do_waits_for_a_nudge_and_takes_new_work_at_once(
        user, broker, settings, monkeypatch):
    first = one_worker_holding_a_delivery(user, broker, settings)
    assert broker.connection.llen(broker.nudge_key) == 0  # nobody was awake to nudge
    late, really_nudged = [], delivery.nudged

    def nudged_while_a_producer_commits(seconds):
        if not late:  # the worker has drained the queue and waits: a producer commits now
            late.append(submit("diagnostics.noop", user, {}))
        return really_nudged(seconds)

    monkeypatch.setattr(delivery, "nudged", nudged_while_a_producer_commits)
    assert runner.run(first.pk) == "completed"
    assert Operation.objects.get(pk=late[0].pk).status == Status.COMPLETED
    assert messages(broker) == 0  # the worker was awake: no message, one nudge, taken
    assert broker.connection.llen(broker.nudge_key) == 0


@pytest.mark.django_db(transaction=True)
def test_nudges_are_never_more_than_the_workers(user, broker):
    delivery.awake("host-a:1:1")
    for _ in range(5):
        submit("diagnostics.noop", user, {})
    assert broker.connection.llen(broker.nudge_key) == 2

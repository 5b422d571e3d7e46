"""Workers drain the queue: after the operation it was handed, a worker claims and runs
whatever else is pending for a short time slice; the broker's deliveries of what it drained
are then no-ops, and no message is sent while enough wait to wake every worker. Under
concurrency no operation is claimed twice."""
import pytest

from operations import runner
from operations.models import Attempt, Operation, Status
from operations.services import submit, submit_many
from tests.running import in_threads


@pytest.fixture
def draining(settings):
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 5.0}


@pytest.mark.django_db
def test_a_delivery_runs_its_operation_then_drains_the_rest(user, draining):
    operations = [submit("diagnostics.noop", user, {}) for _ in range(5)]
    assert runner.run(operations[2].pk) == "completed"
    assert set(Operation.objects.values_list("status", flat=True)) == {Status.COMPLETED}
    first_attempts = sorted(Attempt.objects.values_list("started_at", "operation_id"))
    assert first_attempts[0][1] == operations[2].pk  # the delivered one first
    assert [o for _, o in first_attempts[1:]] == [op.pk for op in operations if op != operations[2]]
    for operation in operations:  # the broker's later deliveries find nothing to do
        assert runner.run(operation.pk) == "skipped"
    assert Attempt.objects.count() == 5


@pytest.mark.django_db
def test_draining_stops_when_the_time_slice_is_spent(user, settings):
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 0.0}
    first, second = submit("diagnostics.noop", user, {}), submit("diagnostics.noop", user, {})
    runner.run(first.pk)
    assert Operation.objects.get(pk=second.pk).status == Status.PENDING


@pytest.mark.django_db
def test_an_operation_waiting_for_its_retry_is_not_drained(user, draining):
    from django.utils import timezone

    first = submit("diagnostics.noop", user, {})
    later = submit("diagnostics.noop", user, {})
    Operation.objects.filter(pk=later.pk).update(status=Status.RETRY_SCHEDULED,
                                                 next_attempt_at=timezone.now())
    runner.run(first.pk)
    assert Operation.objects.get(pk=later.pk).status == Status.RETRY_SCHEDULED


@pytest.mark.django_db
def test_interrupted_work_keeps_its_place_in_line(user, draining):
    """An operation recovered from a lost host (or back from a backoff) is taken before work
    that has never started, even work queued before it, so it does not wait behind a backlog."""
    from operations.dispatcher import release_due

    interrupted = submit("diagnostics.noop", user, {})
    backlog = [submit("diagnostics.noop", user, {}) for _ in range(3)]
    delivered = submit("diagnostics.noop", user, {})
    claimed = Operation.claim_next("lost-host:1:1", pk=interrupted.pk)
    assert Operation.objects.get(pk=claimed.pk).recover(claimed.lease_token)
    release_due()  # due now: pending again, queued after the backlog
    runner.run(delivered.pk)
    order = list(Attempt.objects.filter(outcome="succeeded").order_by("started_at").values_list(
        "operation_id", flat=True))
    assert order == [delivered.pk, interrupted.pk, *[op.pk for op in backlog]]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_draining_the_same_queue_never_claim_an_operation_twice(user, draining):
    operations = [submit("diagnostics.noop", user, {}) for _ in range(300)]
    # Eight workers are each handed one operation, then drain the rest concurrently.
    in_threads(8, lambda i: runner.run(operations[i].pk))
    assert Operation.objects.filter(status=Status.COMPLETED).count() == 300
    assert Attempt.objects.count() == 300
    assert set(Attempt.objects.values_list("number", flat=True)) == {1}  # none claimed twice


# --- coalesced deliveries ----------------------------------------------------------------------

def broker_messages() -> list:
    """The operation ids of the messages waiting in the (ORM) broker, "" for a wake-up."""
    from django_q.models import OrmQ

    return [message.task["args"][0] for message in OrmQ.objects.order_by("id")]


@pytest.mark.django_db(transaction=True)
def test_no_message_is_sent_while_one_waits_for_every_worker(user, draining, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    operations = [submit("diagnostics.noop", user, {}) for _ in range(10)]
    # Two messages wake both workers; each drains the queue, so eight more would be no-ops.
    assert broker_messages() == [str(operations[0].pk), str(operations[1].pk)]
    assert runner.run(operations[0].pk) == "completed"
    assert set(Operation.objects.values_list("status", flat=True)) == {Status.COMPLETED}


@pytest.mark.django_db(transaction=True)
def test_many_submitted_together_send_only_what_wakes_every_worker(user, draining, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    first = submit_many("diagnostics.noop", user, [{} for _ in range(10)])
    assert broker_messages() == [str(first[0].pk), str(first[1].pk)]
    more = submit_many("diagnostics.noop", user, [{} for _ in range(5)])
    assert len(broker_messages()) == 2 and len(more) == 5  # both workers are woken already
    assert runner.run(first[0].pk) == "completed"
    assert set(Operation.objects.values_list("status", flat=True)) == {Status.COMPLETED}
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 0.0}
    last = submit_many("diagnostics.noop", user, [{} for _ in range(3)])
    assert broker_messages()[-3:] == [str(op.pk) for op in last]  # no draining: one each


@pytest.mark.django_db(transaction=True)
def test_without_draining_every_operation_gets_its_message(user, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    operations = [submit("diagnostics.noop", user, {}) for _ in range(4)]
    assert broker_messages() == [str(op.pk) for op in operations]


@pytest.mark.django_db
def test_a_delivery_whose_operation_is_gone_drains_the_rest(user, draining):
    done, *rest = [submit("diagnostics.noop", user, {}) for _ in range(4)]
    Operation.objects.filter(pk=done.pk).update(status=Status.CANCELLED)
    assert runner.run(done.pk) == "skipped"
    assert {Operation.objects.get(pk=op.pk).status for op in rest} == {Status.COMPLETED}
    assert runner.run(None) == "skipped"  # a wake-up with nothing left: nothing to do


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_slice_ends_with_work_left_wakes_the_next(user, settings):
    from django_q.models import OrmQ

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 1e-9}  # a slice of one operation
    first, second = submit("diagnostics.noop", user, {}), submit("diagnostics.noop", user, {})
    OrmQ.objects.all().delete()  # as if both messages had been taken
    assert runner.run(first.pk) == "completed"
    assert Operation.objects.get(pk=second.pk).status == Status.PENDING
    assert broker_messages() == [""]  # the hand-off: one wake-up for what is left
    settings.REBOUND = {**settings.REBOUND, "DRAIN_SECONDS": 5.0}
    assert runner.run(None) == "skipped" and Operation.objects.get(
        pk=second.pk).status == Status.COMPLETED

"""A real django-q2 cluster is SIGKILLed mid-operation; the engine brings the operation back."""
import os
import signal
import time

import pytest
from django.utils import timezone

from operations import dispatcher
from operations.models import Host, Operation, Outcome, Status, Trigger
from operations.services import submit
from tests.processes import cluster, kill_group, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def status_of(operation):
    return Operation.objects.get(pk=operation.pk).status


def finish_in_new_cluster(operation, tmp_path) -> list[tuple[str, str]]:
    """Start a fresh cluster, let it complete the operation; its attempts' (outcome, trigger)."""
    with cluster(tmp_path, name="fresh"):
        wait_for(lambda: status_of(operation) == Status.COMPLETED, 30, what="completion")
    return list(Operation.objects.get(pk=operation.pk).attempts.values_list("outcome", "trigger"))


def slow_operation(user):
    # Attempt 1 sleeps long enough to be killed; the retry finishes at once.
    return submit("diagnostics.sleep", user, {"seconds": 60, "slow_attempts": [1]})


def test_killed_worker_process_is_recovered_before_its_lease_expires(user, tmp_path,
                                                                     running_dispatcher):
    operation = slow_operation(user)
    with cluster(tmp_path, REBOUND_LEASE_SECONDS=30):
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="first attempt")
        holder = Operation.objects.get(pk=operation.pk).lease_holder
        worker_pid = int(holder.split(":")[1])
        killed_at = timezone.now()
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: status_of(operation) == Status.COMPLETED, 25, what="completion")
    operation.refresh_from_db()
    first, second = operation.attempts.all()
    assert first.outcome == Outcome.CRASHED and first.worker == holder
    assert second.trigger == Trigger.RECOVERED and second.outcome == Outcome.SUCCEEDED
    # Well inside the 30 s lease: the dispatcher saw the holder process was gone.
    assert (second.started_at - killed_at).total_seconds() < 15


def test_lost_host_is_recovered_once_its_lease_expires(user, tmp_path):
    operation = slow_operation(user)
    with cluster(tmp_path, name="first") as first_cluster:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="first attempt")
        kill_group(first_cluster)
    # The holder is on a host this dispatcher cannot see: only the lease can tell.
    Operation.objects.filter(pk=operation.pk).update(lease_holder="lost-host:4242:1")
    assert dispatcher.sweep()["recovered"] == 0
    assert status_of(operation) == Status.PROCESSING
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    assert dispatcher.sweep()["recovered"] == 1
    assert dispatcher.release_due() == 1
    assert finish_in_new_cluster(operation, tmp_path) == [
        (Outcome.CRASHED, Trigger.FIRST), (Outcome.SUCCEEDED, Trigger.RECOVERED)]


def test_sigterm_hands_the_operation_back_without_counting_a_crash(user, tmp_path):
    operation = slow_operation(user)
    with cluster(tmp_path, name="stopping") as stopping_cluster:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="first attempt")
        os.killpg(stopping_cluster.pid, signal.SIGTERM)  # a deploy: every process is asked
        # The worker hands the operation back at its next heartbeat. (django-q2's own
        # processes do not all exit on a group SIGTERM; the context manager kills the rest.)
        wait_for(lambda: status_of(operation) == Status.RETRY_SCHEDULED, 10, what="release")
    operation.refresh_from_db()
    attempt = operation.attempts.get()
    assert operation.status == Status.RETRY_SCHEDULED and operation.error_code == "worker_stopped"
    assert attempt.outcome == Outcome.TRANSIENT and attempt.error_code == "worker_stopped"
    assert dispatcher.release_due() == 1
    assert finish_in_new_cluster(operation, tmp_path) == [
        (Outcome.TRANSIENT, Trigger.FIRST), (Outcome.SUCCEEDED, Trigger.RECOVERED)]


def test_stopping_the_run_commands_cluster_exits_promptly_and_hands_work_back(user, tmp_path):
    from operations.management.commands.run import stop_cluster

    operation = slow_operation(user)
    with cluster(tmp_path, name="graceful") as process:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="first attempt")
        stop_cluster(process.pid)
        process.wait(timeout=20)  # the whole cluster exits by itself, nothing is killed
    operation.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED and operation.error_code == "worker_stopped"
    assert operation.attempts.get().outcome == Outcome.TRANSIENT


def test_a_host_that_loses_power_has_its_work_running_again_within_10_s(user, tmp_path):
    """Host A (its cluster and dispatcher) is SIGKILLed whole; host B's dispatcher notices
    the silence after REBOUND_HOST_DEAD_AFTER (5 s), long before A's 30 s leases expire."""
    from tests.processes import managed

    operation = slow_operation(user)
    with managed(tmp_path, "qcluster", "a-cluster", REBOUND_HOST_ID="host-a") as a_cluster, \
            managed(tmp_path, "dispatcher", "a-dispatcher", REBOUND_HOST_ID="host-a") as a_disp:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="host A to start")
        assert Operation.objects.get(pk=operation.pk).lease_holder.startswith("host-a:")
        wait_for(lambda: Host.objects.filter(name="host-a").exists(), 30,
                 what="host A's first heartbeat")
        with managed(tmp_path, "qcluster", "b-cluster", REBOUND_HOST_ID="host-b"), \
                managed(tmp_path, "dispatcher", "b-dispatcher", REBOUND_HOST_ID="host-b"):
            time.sleep(1)  # B is up and beating
            killed_at = timezone.now()
            kill_group(a_cluster)
            kill_group(a_disp)
            wait_for(lambda: status_of(operation) == Status.COMPLETED, 25, what="completion")
    first, second = Operation.objects.get(pk=operation.pk).attempts.all()
    assert first.outcome == Outcome.CRASHED and second.worker.startswith("host-b:")
    assert (second.started_at - killed_at).total_seconds() < 10


def test_a_host_stopped_on_purpose_hands_its_work_over_without_a_crash(user, tmp_path):
    from tests.processes import managed

    operation = slow_operation(user)
    with managed(tmp_path, "qcluster", "a-cluster", REBOUND_HOST_ID="host-a") as a_cluster, \
            managed(tmp_path, "dispatcher", "a-dispatcher", REBOUND_HOST_ID="host-a") as a_disp:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, what="host A to start")
        # Host A has been up for a while: its dispatcher has beaten at least once.
        wait_for(lambda: Host.objects.filter(name="host-a", dispatcher_beat_at__isnull=False)
                 .exists(), 30, what="host A's dispatcher to beat")
        holder = Operation.objects.get(pk=operation.pk).lease_holder
        with managed(tmp_path, "qcluster", "b-cluster", REBOUND_HOST_ID="host-b"), \
                managed(tmp_path, "dispatcher", "b-dispatcher", REBOUND_HOST_ID="host-b"):
            # As `manage.py run` on host A stops it: SIGTERM to the cluster and to the worker
            # holding the operation, then to the dispatcher.
            os.kill(a_cluster.pid, signal.SIGTERM)
            os.kill(int(holder.split(":")[1]), signal.SIGTERM)
            os.kill(a_disp.pid, signal.SIGTERM)
            a_disp.wait(timeout=10)
            wait_for(lambda: status_of(operation) == Status.COMPLETED, 25, what="completion")
    assert Host.objects.get(name="host-a").stopped_at is not None
    first, second = Operation.objects.get(pk=operation.pk).attempts.all()
    assert first.worker == holder and first.outcome == Outcome.TRANSIENT
    assert first.error_code == "worker_stopped" and second.worker.startswith("host-b:")


def test_a_host_killed_before_its_first_lease_beat_is_recovered_within_dead_after(
        user, tmp_path, settings):
    settings.REBOUND = {**settings.REBOUND, "HOST_DEAD_AFTER_SECONDS": 2.0}
    operation = slow_operation(user)
    with cluster(tmp_path, name="doomed", REBOUND_HOST_ID="doomed-host",
                 REBOUND_LEASE_SECONDS=30) as doomed:
        wait_for(lambda: status_of(operation) == Status.PROCESSING, 30, interval=0.01,
                 what="first attempt")
        kill_group(doomed)  # the whole host, within moments of its claim
        killed_at = timezone.now()
    # The worker said its host was alive before it claimed: the host is known, and its
    # silence is noticed after REBOUND_HOST_DEAD_AFTER, not after the 30 s lease.
    assert Host.objects.filter(name="doomed-host").exists()
    wait_for(lambda: dispatcher.recover_lost() == 1, 10, interval=0.1, what="recovery")
    operation.refresh_from_db()
    assert operation.status == Status.RETRY_SCHEDULED and operation.error_code == "worker_lost"
    assert (timezone.now() - killed_at).total_seconds() < 2.0 + 3

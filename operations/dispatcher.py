"""The dispatcher: starts due retries on time, recovers operations whose worker is gone,
re-delivers pending operations whose delivery was lost, counts finished work into the rollups
and, once an hour, prunes history past retention.

Several dispatchers may run at once on several hosts: each act is a conditional UPDATE, and
only the dispatcher whose update won enqueues.
"""
import logging
import time

from django.conf import settings
from django.db import OperationalError, close_old_connections
from django.db.models import Q
from django.db.models.functions import Now

from operations import delivery, followups, gates, notifications, retention, rollups
from operations.lease import holder_is_dead, host_of, this_host
from operations.models import Host, Operation, Status, db_now_plus

log = logging.getLogger("rebound.dispatcher")
BATCH = 200


def release_due() -> int:
    """retry_scheduled operations whose time has come -> pending, and enqueue them."""
    due = Operation.objects.filter(status=Status.RETRY_SCHEDULED, next_attempt_at__lte=Now())
    released = 0
    for operation in due.only("pk")[:BATCH]:
        if operation.release_if_due():
            delivery.enqueue_now(operation.pk)
            released += 1
    return released


def recover_lost() -> int:
    """processing operations whose lease expired, whose holder process on this host has died,
    or whose host went silent: record the attempt as crashed (or timed out) and schedule or
    fail them. Each recovery is fenced by the lease token, so only one dispatcher's counts."""
    dead_hosts = [name for name in Host.dead(settings.REBOUND["HOST_DEAD_AFTER_SECONDS"])
                  if name != this_host()]
    held_by_the_dead = Q()
    for name in dead_hosts:
        held_by_the_dead |= Q(lease_holder__startswith=f"{name}:")
    candidates = Operation.objects.filter(
        Q(lease_expires_at__lt=Now()) | Q(lease_holder__startswith=f"{this_host()}:")
        | held_by_the_dead, status=Status.PROCESSING).only(
        "pk", "kind", "lease_token", "lease_holder", "lease_expires_at", "attempt_count")
    recovered = 0
    for operation in candidates.annotate(expired=Q(lease_expires_at__lt=Now()))[:BATCH]:
        lost_host = host_of(operation.lease_holder) in dead_hosts
        if not (operation.expired or lost_host or holder_is_dead(operation.lease_holder)):
            continue
        timed_out = _ran_past_limit(operation)
        if operation.recover(operation.lease_token, timed_out=timed_out):
            log.warning("operation=%s recovered from %s (%s)", operation.pk,
                        operation.lease_holder or "?",
                        "timed out" if timed_out else "host silent" if lost_host else "crashed")
            followups.run(operation.pk)  # a no-op unless the recovery failed it for good
            delivery.asleep(operation.lease_holder)  # a dead worker never looks again
            recovered += 1
    return recovered


def _ran_past_limit(operation) -> bool:
    limit = operation.kind_spec.policy.time_limit
    return operation.attempts.filter(number=operation.attempt_count,
                                     started_at__lt=db_now_plus(-limit)).exists()


def redeliver_lost() -> int:
    """pending operations not claimed long after their delivery was requested: enqueue again.
    A duplicate delivery is harmless (the claim decides), a lost one is not."""
    older_than = settings.REBOUND["REDELIVER_AFTER_SECONDS"]
    stale = Operation.objects.filter(status=Status.PENDING, enqueued_at__lt=db_now_plus(-older_than))
    redelivered = 0
    for operation in stale.only("pk")[:BATCH]:
        if operation.mark_redelivered(older_than):
            delivery.enqueue_now(operation.pk)
            redelivered += 1
    return redelivered


def sweep() -> dict:
    """One full pass of the dispatcher's duties."""
    return {"released": release_due(), "recovered": recover_lost(),
            "redelivered": redeliver_lost(), "gates": gates.tick(),
            "followups": followups.run_due(),
            "notified": sum(notifications.deliver_due().values()),
            "folded": rollups.fold()}


def run_forever(tick: float | None = None, sweep_every: float = 0.5, notify_every: float = 5.0,
                prune_every: float = 3600.0, first_prune_after: float = 60.0,
                stop=None) -> None:
    """Release due retries every tick; recover, re-deliver, run left-over follow-ups and count
    finished work every `sweep_every` seconds; send due notification digests and alerts every
    `notify_every`; prune history `first_prune_after` seconds after start (a dispatcher
    restarted by every deploy still prunes), then every `prune_every`."""
    tick = tick or settings.REBOUND["DISPATCH_TICK_SECONDS"]
    last_sweep = last_notify = last_beat = 0.0
    last_prune = time.monotonic() - prune_every + first_prune_after
    while stop is None or not stop.is_set():
        try:
            if time.monotonic() - last_beat >= 1.0:
                Host.beat(this_host(), dispatcher=True)
                last_beat = time.monotonic()
            release_due()
            if time.monotonic() - last_sweep >= sweep_every:
                recover_lost()
                redeliver_lost()
                gates.tick()
                followups.run_due()
                rollups.fold()
                last_sweep = time.monotonic()
            if time.monotonic() - last_notify >= notify_every:
                notifications.deliver_due()
                last_notify = time.monotonic()
            if time.monotonic() - last_prune >= prune_every:
                last_prune = time.monotonic() - prune_every + first_prune_after
                retention.prune()
        except OperationalError:
            # The database is away (restart, failover): wait and reconnect, never exit.
            log.warning("database unavailable; dispatcher retrying")
            close_old_connections()
            time.sleep(1)
        except Exception:  # noqa: BLE001 - one bad row must not stop every retry
            log.exception("dispatcher pass failed; continuing")
            time.sleep(1)
        time.sleep(tick)

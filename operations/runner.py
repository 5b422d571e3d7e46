"""Runs one delivery of one operation: claim, do the work, record the attempt, decide what next.

The task that django-q2 delivers is a doorway into `run`; `run` always returns normally, so the
delivery is acknowledged and django-q2 never re-runs it on its own.
"""
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection

from operations import delivery, fastpath, followups, gates, kinds
from operations.errors import LeaseLost, TimeLimitExceeded, WorkerStopping, classify
from operations.lease import holder_id, this_host
from operations.models import Host, Operation, Outcome, Status, lease_seconds

log = logging.getLogger("rebound.runner")


@dataclass
class Context:
    """What a handler gets: its operation, the attempt number, and a way to report progress."""

    operation: Operation
    token: object
    attempt_number: int
    time_limit: float
    started: float = field(default_factory=time.monotonic)
    _last_beat: float = 0.0

    @property
    def input(self) -> dict:
        return self.operation.input

    @property
    def checkpoint(self):
        return self.operation.checkpoint

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def heartbeat(self, *, done=None, total=None, checkpoint=None, force=False) -> None:
        """Save progress (and checkpoint); raise LeaseLost if the lease was taken over.

        Progress alone is written at most once a second; a checkpoint is always written, so a
        handler can save it in the same transaction as the work it covers.
        """
        if stopping.is_set():
            raise WorkerStopping()
        if self.elapsed > self.time_limit:
            raise TimeLimitExceeded(f"ran {self.elapsed:.0f}s, limit {self.time_limit:.0f}s")
        now = time.monotonic()
        if checkpoint is None and not force and now - self._last_beat < 1.0:
            return
        self._last_beat = now
        if not self.operation.heartbeat(self.token, done=done, total=total, checkpoint=checkpoint):
            raise LeaseLost(str(self.operation.pk))
        if checkpoint is not None:
            self.operation.checkpoint = checkpoint


class LeaseKeeper:
    """One thread per worker process that keeps the leases of the attempts running in it
    alive while their handlers block (an AI call, a slow read): every second it says the host
    is alive, every third of a lease it extends each lease. It stops extending an attempt past
    its time limit, so a stuck attempt's lease expires and the dispatcher records it as timed
    out. The thread is started once, so a short operation costs it nothing; while it has
    nothing to keep it holds no database connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.watched: dict = {}  # operation id -> [operation, token, time limit, started, extended]
        self.thread = None

    def watch(self, operation: Operation, token, time_limit: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.watched[operation.pk] = [operation, token, time_limit, now, now]
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="lease-keeper")
                self.thread.start()

    def unwatch(self, operation: Operation) -> None:
        with self.lock:
            self.watched.pop(operation.pk, None)

    def _run(self):
        extend_every = max(lease_seconds() / 3, 0.2)
        try:
            while True:
                time.sleep(min(1.0, extend_every))
                with self.lock:
                    entries = list(self.watched.values())
                if entries:
                    self._keep(entries, extend_every)
                else:
                    connection.close()  # nothing to keep: hold no database connection
        finally:
            connection.close()

    def _keep(self, entries, extend_every) -> None:
        now = time.monotonic()
        try:
            host_alive(force=True)
            for entry in entries:
                operation, token, time_limit, started, extended = entry
                if now - started > time_limit or now - extended < extend_every:
                    continue
                entry[4] = now
                if not operation.heartbeat(token):
                    self.unwatch(operation)  # taken over: the handler finds out at its next beat
        except OperationalError:
            log.warning("lease extension failed; will try again")
            close_old_connections()
        except Exception:  # noqa: BLE001 - a keeper that died would keep no lease at all
            log.exception("lease extension failed; will try again")


keeper = LeaseKeeper()

_host_beat_at = float("-inf")  # when this process last said its host is alive (monotonic)


def host_alive(force: bool = False) -> None:
    """Say this host is alive, at most once a second unless `force`. A worker says it before it
    claims anything, so a host that dies at any moment after a claim, even before its lease
    keeper's first beat, is known to the other hosts and recovered within
    REBOUND_HOST_DEAD_AFTER and a sweep, not only when its leases expire."""
    global _host_beat_at
    if force or time.monotonic() - _host_beat_at >= 1.0:
        Host.beat(this_host())
        _host_beat_at = time.monotonic()


# Set by SIGTERM in a worker process: the running handler stops at its next heartbeat and the
# operation is handed back (retry_scheduled, due now) instead of being killed mid-way and later
# counted as a crash.
stopping = threading.Event()


def _catch_sigterm():
    """While a delivery runs, SIGTERM asks it to stop; returns the disposition to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())


def _restore_sigterm(previous) -> None:
    """Put SIGTERM back; if one came while the delivery ran, act on it now that its operations
    are settled."""
    if previous is None:
        return
    signal.signal(signal.SIGTERM, previous)
    if stopping.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def run(operation_id) -> str:
    """Run one delivery of an operation (None: a wake-up), then drain: claim and run whatever
    else is pending, for up to REBOUND_DRAIN_SECONDS, so a busy queue is not paced by one
    broker round trip per operation. A delivery whose operation is gone already (drained by
    another worker, cancelled, a duplicate) drains too: it may be the message that was meant
    to wake a worker for the rest (see `delivery`). Returns what happened to the delivered
    operation, for logs and tests. (django-q2's worker has already closed stale database
    connections before calling it.)

    SIGTERM is caught from before the first claim to the end: one that comes between a claim
    and its handler's first heartbeat hands the operation back too (django-q2's worker would
    otherwise die of it and leave the operation to be recovered as a crash)."""
    holder = holder_id()
    host_alive()
    deadline = time.monotonic() + settings.REBOUND["DRAIN_SECONDS"]
    previous_sigterm = _catch_sigterm()
    delivery.awake(holder)
    try:
        operation = fastpath.claim_next(holder, pk=operation_id) if operation_id else None
        if operation is None:
            # A duplicate delivery, a cancelled operation, one already drained, or a wake-up.
            drain(holder, deadline)
            return "skipped"
        outcome, following, looked = execute(operation, drain_for=_draining(holder, deadline))
        drain(holder, deadline, following, looked)
        return outcome
    except BaseException:
        delivery.asleep(holder)  # drain says it on every way out but this one
        raise
    finally:
        _restore_sigterm(previous_sigterm)


def _draining(holder: str, deadline: float) -> str | None:
    """The holder to claim the next operation for, while the time slice lasts."""
    return holder if time.monotonic() < deadline and not stopping.is_set() else None


# A worker that finds the queue empty waits this long for a producer's nudge before it sleeps:
# under a steady stream new work comes within milliseconds, and a worker still awake takes it
# without a broker message (see `delivery`).
LINGER_SECONDS = 0.25


def _linger(holder: str, deadline: float) -> Operation | None:
    until = min(time.monotonic() + LINGER_SECONDS, deadline)
    while not stopping.is_set() and delivery.nudged(until - time.monotonic()):
        following = fastpath.claim_next(holder)
        if following is not None:
            return following
    return None


def drain(holder: str, deadline: float, following: Operation | None = None,
          looked: bool = False) -> int:
    """Run `following` (already claimed) and then the pending operations in the queue's order,
    until the queue is empty or the time slice is spent. Returns how many ran. `looked`: the
    completion before found the queue empty just now (it tried to claim in the same
    statement), so the worker waits for a nudge before it looks again."""
    ran = 0
    while True:
        if following is None:
            if _draining(holder, deadline) is None:
                delivery.asleep(holder)
                if settings.REBOUND["DRAIN_SECONDS"] > 0 and not stopping.is_set():
                    delivery.hand_off()  # the slice ended, maybe not the queue: wake the next
                return ran
            host_alive()
            following = (None if looked else fastpath.claim_next(holder)) or _linger(
                holder, deadline)
            if following is None:
                # Asleep first, then one last look: whatever a producer committed while it
                # counted this worker awake is found now.
                delivery.asleep(holder)
                following = fastpath.claim_next(holder)
                if following is None:
                    return ran
                delivery.awake(holder)
        _, following, looked = execute(following, drain_for=_draining(holder, deadline))
        ran += 1


def execute(operation: Operation,
            drain_for: str | None = None) -> tuple[str, Operation | None, bool]:
    """Run a claimed operation's attempt (its number is the operation's attempt count) and
    write what it came to. With `drain_for`, a successful completion also claims the next
    pending operation for that holder where the database can do both in one round trip.
    Returns the outcome, that next operation (or None) and whether the queue was looked at
    for it."""
    number = operation.attempt_count
    kind = kinds.find(operation.kind)
    context = Context(operation, operation.lease_token, number, kind.policy.time_limit)
    keeper.watch(operation, operation.lease_token, kind.policy.time_limit)
    log.info("operation=%s kind=%s attempt=%s trigger=%s started", operation.pk, operation.kind,
             number, operation.next_trigger)
    following, looked = None, False
    try:
        result = kind.handler(context)
    except LeaseLost:
        log.warning("operation=%s attempt=%s lost its lease; result discarded", operation.pk,
                    number)
        return "lease_lost", None, False
    except WorkerStopping:
        return _write_final(lambda: operation.release(context.token, number),
                            operation, number, "released"), None, False
    except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
        outcome = _settle_failure(operation, context, kind, exc)
    else:
        outcome, following, looked = _complete(operation, context, kind, result, drain_for)
    finally:
        keeper.unwatch(operation)
    if outcome == "failed" or (outcome == "completed"
                               and operation.has_followups(Status.COMPLETED)):
        followups.run(operation.pk)
    return outcome, following, looked


def _complete(operation, context, kind, result,
              drain_for) -> tuple[str, Operation | None, bool]:
    also = None
    if isinstance(result, kinds.Completion):
        result, also = result.result, result.write
    found = [None, False]  # the operation the completion claimed next; whether it looked

    def write():
        won, found[0], found[1] = fastpath.complete(
            operation, context.token, context.attempt_number, result, also=also,
            then_claim_for=drain_for)
        return won

    try:
        outcome = _write_final(write, operation, context.attempt_number, "completed")
    except Exception as exc:  # noqa: BLE001 - the handler's own write failed: a failed attempt
        return _settle_failure(operation, context, kind, exc), None, False
    if operation.dependency and outcome == "completed":
        gates.note_up(operation.dependency, operation.pk)
    return outcome, found[0], found[1]


def _settle_failure(operation, context, kind, exc) -> str:
    error = classify(exc)
    policy = kind.policy
    number = context.attempt_number
    if operation.dependency:
        if _dependency_is_down(operation, error):
            log.info("operation=%s kind=%s attempt=%s waiting for %s code=%s", operation.pk,
                     operation.kind, number, operation.dependency, error.code)
            return _write_final(lambda: operation.hand_back(context.token, number, error),
                                operation, number, "waiting")
        if not (error.dependency_down or error.retry_after):
            gates.note_up(operation.dependency, operation.pk)  # it answered: it is there
    # What the attempt itself came to: ran out of time, or failed transiently or for good.
    attempt_outcome = (Outcome.TIMED_OUT if isinstance(exc, TimeLimitExceeded)
                       else Outcome.TRANSIENT if error.transient else Outcome.PERMANENT)
    if error.transient and policy.allows_another(operation.attempts_spent):
        delay = policy.delay_after(number, error.retry_after)
        outcome = "retry_scheduled"
        write = lambda: operation.schedule_retry(context.token, number, error, delay,  # noqa: E731
                                                 outcome=attempt_outcome)
    else:
        delay = None
        outcome = "failed"
        write = lambda: operation.fail(context.token, number, error,  # noqa: E731
                                       outcome=attempt_outcome)
    log.info("operation=%s kind=%s attempt=%s %s code=%s transient=%s delay=%s detail=%r",
             operation.pk, operation.kind, number, outcome, error.code, error.transient,
             f"{delay:.2f}" if delay is not None else "-", error.detail[:300])
    return _write_final(write, operation, number, outcome)


def _dependency_is_down(operation, error) -> bool:
    """The failure said the service is away (or to wait): the dependency's gate counts it, and
    if the gate is not closed now the operation waits for it instead of spending the attempt."""
    if not (error.dependency_down or error.retry_after):
        return False
    return gates.note_down(operation.dependency, operation.pk, retry_after=error.retry_after)


def _write_final(write, operation, attempt_number, outcome, tries: int = 5) -> str:
    """The final status write, retried when the database connection drops under it. If it
    still cannot be written, the lease expires and the dispatcher finishes the job."""
    for n in range(tries):
        try:
            if write():
                log.info("operation=%s attempt=%s %s", operation.pk, attempt_number, outcome)
                return outcome
            return "lease_lost"
        except OperationalError:
            log.warning("operation=%s final write failed (try %s); reconnecting", operation.pk,
                        n + 1)
            close_old_connections()
            connection.close()
            time.sleep(min(0.2 * 2**n, 3))
    return "write_failed"

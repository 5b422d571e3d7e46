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

from django.db import OperationalError, close_old_connections, connection

from operations import followups, kinds
from operations.errors import LeaseLost, TimeLimitExceeded, WorkerStopping, classify
from operations.lease import holder_id, this_host
from operations.models import Host, Operation, Outcome, lease_seconds

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


class LeaseKeeper(threading.Thread):
    """Extends the lease while a handler blocks (an AI call, a slow read). It stops extending
    once the attempt passes its time limit, so a stuck attempt's lease expires and the
    dispatcher records it as timed out."""

    def __init__(self, operation: Operation, token, time_limit: float):
        super().__init__(daemon=True, name=f"lease-{operation.pk}")
        self.operation, self.token, self.time_limit = operation, token, time_limit
        self.stopped = threading.Event()
        self.lost = False

    def run(self):
        started = last_extended = time.monotonic()
        extend_every = max(lease_seconds() / 3, 0.2)
        try:
            # Every second: this host is alive (so it is not taken for dead while its
            # dispatcher is away); every third of a lease: the lease is extended.
            while not self.stopped.wait(min(1.0, extend_every)):
                if time.monotonic() - started > self.time_limit:
                    return
                try:
                    Host.beat(this_host())
                    if time.monotonic() - last_extended >= extend_every:
                        last_extended = time.monotonic()
                        if not self.operation.heartbeat(self.token):
                            self.lost = True
                            return
                except OperationalError:
                    log.warning("lease extension failed for %s; will try again", self.operation.pk)
        finally:
            connection.close()

    def stop(self):
        self.stopped.set()
        self.join(timeout=5)


# Set by SIGTERM in a worker process: the running handler stops at its next heartbeat and the
# operation is handed back (retry_scheduled, due now) instead of being killed mid-way and later
# counted as a crash.
stopping = threading.Event()


def _catch_sigterm():
    """While a handler runs, SIGTERM asks it to stop; returns the disposition to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())


def _restore_sigterm(previous) -> None:
    """Put SIGTERM back; if one came while the handler ran, act on it now that the operation
    is settled."""
    if previous is None:
        return
    signal.signal(signal.SIGTERM, previous)
    if stopping.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def run(operation_id) -> str:
    """Run one delivery of an operation. Returns what happened, for logs and tests.
    (django-q2's worker has already closed stale database connections before calling it.)"""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None:
        return "missing"
    holder = holder_id()
    attempt = operation.claim(holder)
    if attempt is None and operation.status == "pending":
        # Our copy may be stale (the row moved on and came back to pending): look again.
        operation.refresh_from_db()
        attempt = operation.claim(holder) if operation.status == "pending" else None
    if attempt is None:
        # A duplicate delivery (or a cancelled operation): another claim won, nothing to do.
        return "skipped"
    kind = kinds.find(operation.kind)
    previous_sigterm = _catch_sigterm()
    context = Context(operation, operation.lease_token, attempt.number, kind.policy.time_limit)
    keeper = LeaseKeeper(operation, operation.lease_token, kind.policy.time_limit)
    keeper.start()
    log.info("operation=%s kind=%s attempt=%s trigger=%s started", operation.pk, operation.kind,
             attempt.number, attempt.trigger)
    try:
        try:
            result = kind.handler(context)
        except LeaseLost:
            log.warning("operation=%s attempt=%s lost its lease; result discarded", operation.pk,
                        attempt.number)
            return "lease_lost"
        except WorkerStopping:
            return _write_final(lambda: operation.release(context.token, attempt.number),
                                operation, attempt.number, "released")
        except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
            outcome = _settle_failure(operation, context, kind, exc)
        else:
            outcome = _complete(operation, context, kind, result)
        finally:
            keeper.stop()
    finally:
        _restore_sigterm(previous_sigterm)
    if outcome in ("completed", "failed"):
        followups.run(operation.pk)
    return outcome


def _complete(operation, context, kind, result) -> str:
    also = None
    if isinstance(result, kinds.Completion):
        result, also = result.result, result.write
    try:
        return _write_final(
            lambda: operation.complete(context.token, context.attempt_number, result, also=also),
            operation, context.attempt_number, "completed")
    except Exception as exc:  # noqa: BLE001 - the handler's own write failed: a failed attempt
        return _settle_failure(operation, context, kind, exc)


def _settle_failure(operation, context, kind, exc) -> str:
    error = classify(exc)
    policy = kind.policy
    number = context.attempt_number
    # What the attempt itself came to: ran out of time, or failed transiently or for good.
    attempt_outcome = (Outcome.TIMED_OUT if isinstance(exc, TimeLimitExceeded)
                       else Outcome.TRANSIENT if error.transient else Outcome.PERMANENT)
    if error.transient and policy.allows_another(operation.attempt_count):
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

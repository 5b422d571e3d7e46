"""Gates: one per outside service that operations need (`Operation.dependency`), shared by every
process on every host through the database.

A blip is retried per operation; an outage is handled per dependency. Attempts that fail
because the service is away (connection refused or reset, timeouts, 502/503/504) are counted
per dependency from the Attempt rows: 5 in a row, or at least half of at least 10 in the last
30 s, open the gate. Nothing calls an open gate: the work that needs it waits (status
`waiting`), spending no attempt. After a cool-down (5 s, doubling to 30 s while probes fail,
with jitter) the dispatcher lets the oldest waiting operation through as the probe
(half-open); its success closes the gate, and the waiting work is released oldest first at a
slow start (a few per second, doubling every second). A 429 or a Retry-After holds the whole
gate until that time. Staff can hold a gate open and release it.

Like pybreaker's and Saleor's breakers, with two differences: the state lives in the database
(every host sees one gate; each change is a conditional UPDATE on the state it came from, so two
dispatchers never both probe), and an open gate holds the work instead of failing the call.
"""
import logging
import math
import random
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Now

from operations import kinds
from operations.models import (Attempt, Gate, GateEvent, GateState, Operation, Status,
                               db_now_plus)

log = logging.getLogger("rebound.gates")

IN_A_ROW = 5  # failures in a row that open a gate
WINDOW_SECONDS = 30.0  # ...or at least half of at least MIN_CALLS calls in this window
MIN_CALLS = 10
CACHE_SECONDS = 1.0  # how stale a process's view of the gates may be
BATCH = 200

_seen = {"at": float("-inf"), "blocked": frozenset(), "probes": frozenset()}


def conf(name: str) -> float:
    return settings.REBOUND[name]


# --- what workers ask --------------------------------------------------------------------------

def blocked() -> tuple[frozenset, frozenset]:
    """The dependencies whose gate is not closed, and the probes they let through, as this
    process saw them at most CACHE_SECONDS ago."""
    now = time.monotonic()
    if now - _seen["at"] >= CACHE_SECONDS:
        rows = list(Gate.objects.exclude(state=GateState.CLOSED).values_list("key", "probe"))
        _seen.update(at=now, blocked=frozenset(key for key, _ in rows),
                     probes=frozenset(str(probe) for _, probe in rows if probe))
    return _seen["blocked"], _seen["probes"]


def forget() -> None:
    """Read the gates afresh at the next question (after this process changed one)."""
    _seen["at"] = float("-inf")


# --- what attempts report ----------------------------------------------------------------------

def note_down(key: str, operation_id, retry_after: float | None = None) -> bool:
    """An attempt of `operation_id` failed because `key` is away (its Attempt row is written).
    A Retry-After holds the gate until then; a failed probe opens it again for longer; recent
    calls that look like an outage open it. True when the gate is not closed now: the
    operation goes back to wait for it instead of spending its attempt."""
    if not settings.REBOUND["GATES"]:
        return False
    gate = _row(key)
    if gate.state == GateState.HALF_OPEN and str(gate.probe) == str(operation_id):
        _probe_failed(gate)
        return True
    if retry_after:
        hold_for(key, retry_after, reason=f"asked to wait {retry_after:.0f} s (Retry-After)")
        return True
    if gate.state != GateState.CLOSED:
        return True
    if _looks_down(key):
        _open(gate, "calls are failing: the service looks down")
        return True
    return False


def note_up(key: str, operation_id) -> None:
    """An attempt of `operation_id` reached `key` and got an answer: if it was the probe of a
    half-open gate, the service is back and the gate closes. (Costs nothing while the gate is
    closed, as this process last saw it.)"""
    if key in blocked()[0]:
        _close(Gate.objects.filter(key=key, state=GateState.HALF_OPEN, probe=operation_id),
               key, "the probe got an answer")


def _looks_down(key: str) -> bool:
    """Do the calls to `key` say it is down, counting the failure being reported now (its
    Attempt is closed by the write that follows)?"""
    finished = Attempt.objects.filter(dependency=key, finished_at__isnull=False)
    last = [True, *finished.order_by("-finished_at").values_list("dependency_down", flat=True)
            [:IN_A_ROW - 1]]
    if len(last) == IN_A_ROW and all(last):
        return True
    recent = finished.filter(finished_at__gte=db_now_plus(-WINDOW_SECONDS)).aggregate(
        calls=Count("id"), down=Count("id", filter=Q(dependency_down=True)))
    calls, down = recent["calls"] + 1, recent["down"] + 1
    return calls >= MIN_CALLS and 2 * down >= calls


# --- state changes (each a conditional UPDATE; the row count says who won) ----------------------

def _row(key: str) -> Gate:
    gate, created = Gate.objects.get_or_create(key=key, defaults={"since": Now()})
    return Gate.objects.get(pk=gate.pk) if created else gate  # `since` as the database set it


def _cooldown(seconds: float) -> float:
    return seconds * (1 + random.uniform(0, 0.2))


def _event(key: str, state: str, reason: str, by=None) -> None:
    GateEvent.objects.create(gate=Gate.objects.get(key=key), state=state, reason=reason[:300],
                             by=by)


def _open(gate: Gate, reason: str) -> bool:
    base = conf("GATE_COOLDOWN_SECONDS")
    with transaction.atomic():
        won = Gate.objects.filter(pk=gate.pk, state=GateState.CLOSED).update(
            state=GateState.OPEN, since=Now(), open_until=db_now_plus(_cooldown(base)),
            cooldown_seconds=base, probe=None, probes=0, released=0, reason=reason[:300])
        if won:
            _event(gate.key, GateState.OPEN, reason)
    if won:
        log.warning("gate %s opened: %s; work that needs it waits", gate.key, reason)
        Operation.park(gate.key)
        forget()
    return bool(won)


def _probe_failed(gate: Gate) -> None:
    cooldown = min(max(gate.cooldown_seconds, conf("GATE_COOLDOWN_SECONDS")) * 2,
                   conf("GATE_COOLDOWN_MAX_SECONDS"))
    won = Gate.objects.filter(pk=gate.pk, state=GateState.HALF_OPEN, probe=gate.probe).update(
        state=GateState.OPEN, open_until=db_now_plus(_cooldown(cooldown)),
        cooldown_seconds=cooldown, probe=None)
    if won:
        log.info("gate %s: probe failed; next probe in about %.0f s", gate.key, cooldown)
        forget()


def _close(candidates, key: str, reason: str, by=None) -> bool:
    with transaction.atomic():
        won = candidates.update(state=GateState.CLOSED, since=Now(), open_until=None,
                                cooldown_seconds=0.0, probe=None, held=False, released=0,
                                reason=reason[:300])
        if won:
            _event(key, GateState.CLOSED, reason, by)
    if won:
        log.warning("gate %s closed: %s; waiting work is released gradually", key, reason)
        forget()
    return bool(won)


def hold_for(key: str, seconds: float, reason: str) -> None:
    """Nothing calls `key` for `seconds` (a 429 or a Retry-After): the gate opens, or stays
    open, at least that long; a half-open gate's probe is called off."""
    gate = _row(key)
    until = db_now_plus(seconds)
    if gate.state == GateState.CLOSED:
        with transaction.atomic():
            if Gate.objects.filter(pk=gate.pk, state=GateState.CLOSED).update(
                    state=GateState.OPEN, since=Now(), open_until=until,
                    cooldown_seconds=conf("GATE_COOLDOWN_SECONDS"), probe=None, probes=0,
                    released=0, reason=reason[:300]):
                _event(key, GateState.OPEN, reason)
                log.warning("gate %s held: %s", key, reason)
    else:
        Gate.objects.filter(pk=gate.pk).exclude(state=GateState.CLOSED).filter(
            Q(open_until__isnull=True) | Q(open_until__lt=until)).update(
            state=GateState.OPEN, open_until=until, probe=None)
    Operation.park(key)
    forget()


def hold(key: str, *, by, reason: str) -> None:
    """Staff open the gate by hand (a provider announced maintenance): nothing calls it and no
    probe is sent until staff release it."""
    gate = _row(key)
    with transaction.atomic():
        Gate.objects.filter(pk=gate.pk).update(state=GateState.OPEN, held=True, since=Now(),
                                               open_until=None, probe=None,
                                               reason=reason[:300])
        _event(key, GateState.OPEN, f"held by staff: {reason}", by)
    log.warning("gate %s held by %s: %s", key, by, reason)
    Operation.park(key)
    forget()


def release(key: str, *, by, reason: str) -> bool:
    """Staff close the gate by hand: waiting work is released at the slow start."""
    _row(key)
    return _close(Gate.objects.filter(key=key).exclude(state=GateState.CLOSED, held=False),
                  key, f"released by staff: {reason}", by)


# --- the dispatcher's duties -------------------------------------------------------------------

def tick() -> dict:
    """Probe open gates whose cool-down has passed, settle probes that ended, park work that
    needs a gate that is not closed, release waiting work behind closed gates (slow start),
    and fail what waited past REBOUND_WAIT_LIMIT. Safe on several dispatchers at once: each
    gate is handled under its row's lock, so no dispatcher acts on a state another has just
    changed (one that still saw a gate open would park the probe it had just sent)."""
    done = {"probes": 0, "parked": 0, "released": 0, "expired": 0}
    waiting_for = set(Operation.objects.filter(status=Status.WAITING)
                      .values_list("dependency", flat=True).distinct())
    keys = set(Gate.objects.exclude(state=GateState.CLOSED).values_list("key", flat=True))
    for key in sorted(keys | waiting_for):
        _row(key)  # work may wait behind a gate that was never written: it is closed
        with transaction.atomic():
            gate = Gate.objects.select_for_update().annotate(now=Now()).get(key=key)
            for name, n in _tend(gate).items():
                done[name] += n
    done["expired"] = _give_up_waiting()
    return done


def _tend(gate: Gate) -> dict:
    """One gate's share of a tick (its row is locked)."""
    if gate.state == GateState.OPEN:
        parked = Operation.park(gate.key)
        due = not gate.held and gate.open_until is not None and gate.open_until <= gate.now
        return {"parked": parked, "probes": _send_probe(gate) if due else 0}
    if gate.state == GateState.HALF_OPEN:
        parked = Operation.park(gate.key, keep=[gate.probe])
        _settle_probe(gate)
        return {"parked": parked}
    return {"released": _release_slowly(gate)}


def _enqueue(operation_id) -> None:
    """Deliver once the tick's transaction has committed (a worker must find it pending)."""
    from operations import delivery

    transaction.on_commit(lambda: delivery.enqueue_now(operation_id, coalesce=False))


def _send_probe(gate: Gate) -> int:
    candidate = (Operation.objects.filter(status=Status.WAITING, dependency=gate.key)
                 .order_by("created_at").only("pk").first())
    if candidate is None:
        return 0  # nothing needs the service yet; probe when something does
    # The gate names its probe and the probe leaves `waiting` in one transaction: another
    # dispatcher that sees the gate half-open must never see its probe still waiting (it would
    # take that for a probe sent back to wait, and open the gate again).
    with transaction.atomic():
        if not Gate.objects.filter(pk=gate.pk, state=GateState.OPEN, held=False,
                                   open_until__lte=Now()).update(
                state=GateState.HALF_OPEN, probe=candidate.pk, probes=F("probes") + 1):
            return 0  # another dispatcher probes
        if not candidate.unpark():
            transaction.set_rollback(True)  # cancelled meanwhile: another, at the next tick
            return 0
    forget()
    _enqueue(candidate.pk)
    log.info("gate %s: probe %s sent", gate.key, candidate.pk)
    return 1


def _settle_probe(gate: Gate) -> None:
    """A probe that ended without its worker saying so (recovered, cancelled, or it got an
    answer that is not an outage, such as a refusal)."""
    probe = Operation.objects.filter(pk=gate.probe).values_list("status", flat=True).first()
    if probe in (Status.PENDING, Status.PROCESSING):
        return
    if probe == Status.WAITING:
        # Parked again by a dispatcher that still saw the gate open (a failed probe opens the
        # gate before it goes back to wait, so this is not one): send it once more.
        if Operation(pk=gate.probe).unpark():
            _enqueue(gate.probe)
        return
    if probe in (Status.COMPLETED, Status.FAILED):
        # It reached the service and got an answer: the service is there.
        _close(Gate.objects.filter(pk=gate.pk, state=GateState.HALF_OPEN, probe=gate.probe),
               gate.key, "the probe got an answer")
    else:
        # Cancelled, gone, or scheduled again after its worker died (no verdict; an answer
        # that was no outage closed the gate when it came): probe again.
        Gate.objects.filter(pk=gate.pk, state=GateState.HALF_OPEN, probe=gate.probe).update(
            state=GateState.OPEN, probe=None, open_until=Now())
        forget()


def allowance(seconds_since_close: float) -> int:
    """How many waiting operations may have been released this long after the gate closed:
    REBOUND_GATE_SLOW_START per second at first, doubling every second."""
    start = conf("GATE_SLOW_START")
    whole = int(min(seconds_since_close, 30))
    fraction = min(seconds_since_close, 30) - whole
    return math.ceil(start * (2 ** whole - 1) + start * 2 ** whole * fraction) + 1


def _release_slowly(gate: Gate) -> int:
    if gate.state != GateState.CLOSED:
        return 0
    now = gate.now
    room = min(allowance((now - gate.since).total_seconds()) - gate.released, BATCH)
    if room <= 0:
        return 0
    released = 0
    for operation in (Operation.objects.filter(status=Status.WAITING, dependency=gate.key)
                      .order_by("created_at").only("pk")[:room]):
        if operation.unpark():
            _enqueue(operation.pk)
            released += 1
    if released:
        Gate.objects.filter(pk=gate.pk, state=GateState.CLOSED).update(
            released=F("released") + released)
    return released


def _give_up_waiting() -> int:
    from operations import followups
    from operations.errors import Classified, user_message

    # REBOUND_WAIT_LIMIT, but for kinds that set their own (webhook deliveries wait days).
    own = {name: kinds.get(name).wait_limit for name in kinds.names()
           if kinds.get(name).wait_limit}
    limits = [(~Q(kind__in=own), conf("WAIT_LIMIT_SECONDS"))]
    limits += [(Q(kind=name), seconds) for name, seconds in own.items()]
    expired = 0
    for match, limit in limits:
        for operation in (Operation.objects.filter(match, status=Status.WAITING,
                                                   waiting_since__lt=db_now_plus(-limit))
                          .only("pk", "dependency")[:BATCH]):
            error = Classified(False, "dependency_down", user_message("dependency_down"),
                               f"{operation.dependency} stayed down for over {limit:.0f} s")
            if operation.give_up_waiting(error):
                followups.run(operation.pk)
                expired += 1
    return expired


# --- what staff see ----------------------------------------------------------------------------

def board() -> list[dict]:
    """Every dependency that has a gate or waiting work: its state, since when, the failure
    ratio of its calls in the last 30 s, what waits for it, its probes and latest events."""
    from operations.dependencies import label

    waiting = dict(Operation.objects.filter(status=Status.WAITING).exclude(dependency="")
                   .values("dependency").annotate(n=Count("id")).values_list("dependency", "n"))
    gates = {gate.key: gate for gate in Gate.objects.all()}
    rows = []
    for key in sorted(set(gates) | set(waiting)):
        gate = gates.get(key)
        # One dependency's recent calls: a range of its index, however long the history.
        calls = Attempt.objects.filter(dependency=key, finished_at__gte=db_now_plus(
            -WINDOW_SECONDS)).aggregate(calls=Count("id"),
                                        down=Count("id", filter=Q(dependency_down=True)))
        rows.append({
            "key": key, "label": label(key), "gate": gate,
            "state": gate.state if gate else GateState.CLOSED,
            "since": gate.since if gate else None, "held": bool(gate and gate.held),
            "waiting": waiting.get(key, 0), "probes": gate.probes if gate else 0,
            "calls": calls["calls"], "failing": calls["down"],
            "events": list(gate.events.all()[:5]) if gate else []})
    order = {GateState.OPEN: 0, GateState.HALF_OPEN: 1, GateState.CLOSED: 2}
    return sorted(rows, key=lambda row: (order[row["state"]], row["key"]))

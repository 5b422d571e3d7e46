"""The pipeline of a batch: phases in order per essay, then the batch-only phase; the state of
every (phase, essay) read from the engine's chains; `advance` starts whatever may start now
(each step once, by its dedupe key), and `retry_phase` retries a phase's failed items through
the engine's bulk retry."""
from dataclasses import dataclass, field

from django.db import transaction

from batches.models import Batch, Essay, PhaseOutput
from inference import client as inference
from operations import events
from operations.chains import NOT_STARTED, Chain, NotStarted, latest_of
from operations.models import Attempt, Operation, Outcome, Status
from operations.refusals import declare
from operations.services import RetryRefused, check_reason, retry_failed, submit

PHASES = ("spellcheck", "nlp", "ai_feedback", "cj_assessment")
PER_ESSAY = PHASES[:3]
BATCH_ONLY = "cj_assessment"
AI_PHASES = ("ai_feedback", "cj_assessment")  # they call the AI provider in the batch's region

UNKNOWN_PHASE = declare("unknown_phase", 400, "There is no phase 'grammar'; the phases are "
                        "spellcheck, nlp, ai_feedback, cj_assessment.")
BATCH_ONLY_PHASE = declare("batch_only_phase", 400,
                           "cj_assessment runs on the whole batch; retry it without essay_ids.")
UNKNOWN_ESSAY = declare("unknown_essay", 400, "Some essay_ids are not essays of this batch.")
PHASE_NOT_READY = declare("phase_not_ready", 409, "Earlier phases of cj_assessment have not "
                          "finished (some are running or failed): retry those first.")
NOTHING_TO_RETRY = declare("nothing_to_retry", 409, "Nothing failed in ai_feedback.")
PHASE_LABELS = {"spellcheck": "Spelling", "nlp": "Language", "ai_feedback": "AI feedback",
                "cj_assessment": "Comparative judgement"}


STATUS_LABELS = {"not_started": "Not started", "pending": "Pending", "running": "Running",
                 "waiting": "Waiting",
                 "completed": "Done", "failed": "Failed", "failed_permanently": "Failed for good",
                 "left_out": "Left out"}


def kind_of(phase: str) -> str:
    return f"batches.{phase}"


def dedupe_key(batch_id, phase: str, essay_id=None) -> str:
    """The name of a (batch, phase, essay) step: its chain's first operation carries it."""
    return f"batches:{batch_id}:{phase}:{essay_id if essay_id is not None else 'batch'}"


@dataclass
class Item:
    """One phase of one essay, or the batch-only phase of the batch."""

    phase: str
    essay: Essay | None
    chain: Chain | NotStarted = NOT_STARTED
    permanent: bool = False  # failed for good with a permanent error (never auto-retried)
    left_out_by: "Item | None" = None  # the earlier phase whose permanent failure left it out
    output: PhaseOutput | None = None

    @property
    def operation(self) -> Operation | None:
        return self.chain.latest

    @property
    def status(self) -> str:
        """not_started, pending, running, completed, failed, failed_permanently, left_out."""
        op = self.operation
        if op is None:
            return "left_out" if self.left_out_by else "not_started"
        if op.status == Status.COMPLETED:
            return "completed"
        if op.status in (Status.FAILED, Status.CANCELLED):
            return "failed_permanently" if self.permanent else "failed"
        if op.status == Status.PROCESSING or (op.status == Status.RETRY_SCHEDULED
                                              and op.attempt_count):
            return "running"
        if op.status == Status.WAITING:
            return "waiting"  # for the AI service in the batch's region to answer again
        return "pending"

    @property
    def phase_label(self) -> str:
        return PHASE_LABELS[self.phase]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed_permanently", "left_out")

    @property
    def busy(self) -> bool:
        return self.status in ("pending", "running", "waiting")

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "failed_permanently")


@dataclass
class BatchState:
    batch: Batch
    essays: list[Essay]
    items: dict = field(default_factory=dict)  # (phase, essay id or None) -> Item

    def item(self, phase: str, essay: Essay | None = None) -> Item:
        return self.items[(phase, essay.pk if essay else None)]

    def left_out(self, essay: Essay) -> Item | None:
        """The per-essay phase that failed permanently for this essay, if any."""
        for phase in PER_ESSAY:
            item = self.item(phase, essay)
            if item.permanent:
                return item
        return None

    def included(self) -> list[Essay]:
        """Essays that go on to the batch-only phase (not left out)."""
        return [essay for essay in self.essays if self.left_out(essay) is None]

    def waiting_for(self) -> list[Essay]:
        """Included essays that have not finished the phase before the batch-only one."""
        return [essay for essay in self.included()
                if self.item(PER_ESSAY[-1], essay).status != "completed"]

    @property
    def busy(self) -> bool:
        """Something runs or waits to run, or a step has just ended and its follow-ups (which
        start the next steps) have not run yet: the page keeps polling through that moment."""
        return any(item.busy or (item.operation is not None and item.operation.followup_due)
                   for item in self.items.values())

    def ranking(self) -> list[dict] | None:
        output = self.item(BATCH_ONLY).output
        return output.output.get("ranking") if output else None


def read(batch: Batch) -> BatchState:
    """Every item of the batch in a constant number of queries (essays, first operations by
    their keys, the chains, permanent failures, outputs)."""
    essays = list(batch.essays.all())
    state = BatchState(batch, essays)
    keys = {dedupe_key(batch.pk, phase, essay.pk): (phase, essay)
            for phase in PER_ESSAY for essay in essays}
    keys[dedupe_key(batch.pk, BATCH_ONLY)] = (BATCH_ONLY, None)
    firsts = dict(Operation.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", "pk"))
    chains = latest_of(firsts.values())
    failed = [c.latest.pk for c in chains.values() if c.latest.status == Status.FAILED]
    permanent = set(Attempt.objects.filter(operation__in=failed, outcome=Outcome.PERMANENT)
                    .values_list("operation_id", flat=True))
    outputs = {(o.phase, o.essay_id): o for o in batch.outputs.all()}
    for key, (phase, essay) in keys.items():
        chain = chains.get(firsts.get(key))
        essay_id = essay.pk if essay else None
        state.items[(phase, essay_id)] = Item(
            phase, essay, chain or NOT_STARTED,
            permanent=chain is not None and chain.latest.pk in permanent,
            output=outputs.get((phase, essay_id)))
    for essay in essays:
        cause = state.left_out(essay)
        if cause is not None:
            for phase in PER_ESSAY[PER_ESSAY.index(cause.phase) + 1:]:
                state.item(phase, essay).left_out_by = cause
    return state


def _start(batch: Batch, phase: str, essay: Essay | None, faults: dict | None) -> Operation:
    input = {"batch_id": batch.pk, "phase": phase,
             "essay_id": essay.pk if essay else None}
    if faults:
        input["faults"] = faults  # drills and the demo: {phase: error code}, see phases.py
    return submit(kind_of(phase), batch.owner, input,
                  dedupe_key=dedupe_key(batch.pk, phase, essay.pk if essay else None),
                  dependency=inference.dependency(batch.region) if phase in AI_PHASES else "")


def advance(batch_id, *, faults: dict | None = None) -> int:
    """Start every step that may start now, up to the batch's requested phase: each essay's
    next phase once the one before completed, and the batch-only phase once every essay not
    left out has finished the phase before it. Safe to call any number of times, from any
    number of processes: a step that exists is not started again. Returns how many started."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.requested_phase not in PHASES:
        return 0
    last = PHASES.index(batch.requested_phase)
    state = read(batch)
    started = 0
    with transaction.atomic():
        for essay in state.essays:
            if state.left_out(essay) is not None:
                continue
            previous = None
            for phase in PER_ESSAY[:last + 1]:
                item = state.item(phase, essay)
                if item.operation is None:
                    carried = (previous.operation.input.get("faults") if previous
                               else (faults or {}).get(essay.pk))
                    _start(batch, phase, essay, carried)
                    started += 1
                    break
                if item.status != "completed":
                    break
                previous = item
        if (last == PHASES.index(BATCH_ONLY) and state.item(BATCH_ONLY).operation is None
                and state.included() and not state.waiting_for()):
            _start(batch, BATCH_ONLY, None, None)
            started += 1
    return started


def request_pipeline(batch: Batch, phase: str, *, faults: dict | None = None) -> int:
    """Run every phase up to and including `phase` (asking for less than before keeps the
    earlier, longer request)."""
    if phase not in PHASES:
        raise unknown_phase(phase)
    if not batch.requested_phase or PHASES.index(phase) > PHASES.index(batch.requested_phase):
        Batch.objects.filter(pk=batch.pk).update(requested_phase=phase)
        batch.requested_phase = phase
    return advance(batch.pk, faults=faults)


def unknown_phase(phase) -> RetryRefused:
    return RetryRefused(UNKNOWN_PHASE, 400,
                        f"There is no phase {phase!r}; the phases are {', '.join(PHASES)}.",
                        {"phases": list(PHASES)})


def retry_phase(batch: Batch, phase: str, *, by, channel: str, reason: str = "",
                essay_ids=None, staff: bool = False) -> dict:
    """Retry the failed items of one phase (all, or those essays) through the engine's bulk
    retry, with `is_retry` and the reason on every new operation. Refusals in order:
    unknown_phase 400, reason_too_long 400, batch_only_phase 400, phase_not_ready 409,
    nothing_to_retry 409; items at their retry limit are counted in the report."""
    if phase not in PHASES:
        raise unknown_phase(phase)
    check_reason(reason)
    if essay_ids is not None and phase == BATCH_ONLY:
        raise RetryRefused(BATCH_ONLY_PHASE, 400,
                           f"{phase} runs on the whole batch; retry it without essay_ids.",
                           {"phase": phase})
    state = read(batch)
    essays = state.essays if essay_ids is None else _chosen(state, essay_ids)
    if phase == BATCH_ONLY:
        items = [state.item(BATCH_ONLY)]
        not_ready = bool(state.waiting_for())
    else:
        items = [state.item(phase, essay) for essay in essays]
        earlier = PER_ESSAY[:PER_ESSAY.index(phase)]
        not_ready = any(state.item(p, e).status != "completed" and state.left_out(e) is None
                        for e in essays for p in earlier)
    failed = [item.operation for item in items if item.failed]
    if (not failed or essay_ids is not None) and not_ready:
        raise RetryRefused(PHASE_NOT_READY, 409,
                           f"Earlier phases of {phase} have not finished (some are running or "
                           "failed): retry those first.", {"phase": phase})
    if not failed:
        raise RetryRefused(NOTHING_TO_RETRY, 409, f"Nothing failed in {phase}.",
                           {"phase": phase})
    return retry_failed(failed, by=by, channel=channel, reason=reason, staff=staff)


def _chosen(state: BatchState, essay_ids) -> list[Essay]:
    by_id = {essay.pk: essay for essay in state.essays}
    try:
        chosen = [by_id[int(essay_id)] for essay_id in essay_ids]
    except (KeyError, TypeError, ValueError):
        raise RetryRefused(UNKNOWN_ESSAY, 400,
                           "Some essay_ids are not essays of this batch.",
                           {"essay_ids": list(by_id)}) from None
    if not chosen:
        raise RetryRefused(UNKNOWN_ESSAY, 400, "Choose at least one essay.",
                           {"essay_ids": list(by_id)})
    return chosen


def _batch_data(batch: Batch) -> dict:
    return {"id": batch.pk, "title": batch.title}


def announce_failure(batch_id, operation: Operation) -> None:
    """batch.phase_failed: one phase of one essay (or the batch-only phase) failed for good
    (in the follow-up of that failure: once per failed operation)."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return
    events.emit("batch.phase_failed", batch.owner_id,
                {"batch": _batch_data(batch), "phase": operation.input.get("phase"),
                 "essay_id": operation.input.get("essay_id"),
                 "operation": events.operation_data(operation)},
                key=f"batch.phase_failed:{operation.pk}")


def announce_if_finished(batch_id) -> bool:
    """batch.finished, when nothing of the phases the batch asked for runs or waits to start.
    A batch finishes again after a manual retry: the key counts its operations, so each time
    it finishes is one event, however many follow-ups conclude it at once."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.requested_phase not in PHASES:
        return False
    state = read(batch)
    last = PHASES.index(batch.requested_phase)
    wanted = [item for item in state.items.values() if PHASES.index(item.phase) <= last]
    # A step not started is still to come, except the batch-only phase when every essay
    # was left out (it has nothing to judge).
    to_come = [item for item in wanted if item.status == "not_started" and not (
        item.phase == BATCH_ONLY and not state.included())]
    if to_come or any(item.busy for item in wanted):
        return False
    counts = {}
    for item in wanted:
        counts[item.status] = counts.get(item.status, 0) + 1
    runs = sum(item.operation.retry_number + 1 for item in wanted if item.operation)
    events.emit("batch.finished", batch.owner_id,
                {"batch": _batch_data(batch), "phase": batch.requested_phase, "counts": counts},
                key=f"batch.finished:{batch.pk}:{runs}")
    return True

"""Batch pages: the list, a new batch (pasted or uploaded essays), and the phase × essay grid
that polls while anything runs, with a Retry phase form (reason, essays) under each phase that
has failures, each step's history and the ranking. Plain forms work without JavaScript."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from batches import pipeline
from batches.api import NewBatchSerializer
from batches.models import Batch
from batches.services import MAX_ESSAY_CHARS, MAX_ESSAYS, create_batch
from operations.api.views import RetryThrottle
from operations.chains import history_of
from operations.models import Channel
from operations.services import MAX_REASON_LENGTH, RetryRefused
from operations.views import page_throttle, toast

SEPARATOR = "---"
MAX_UPLOAD_BYTES = 200_000


def _batch(request, batch_id) -> Batch:
    return get_object_or_404(Batch, pk=batch_id, owner=request.user)


@login_required
def batch_list(request):
    return render(request, "batches/list.html",
                  {"batches": Batch.objects.filter(owner=request.user)[:50]})


def split_essays(text: str) -> list[str]:
    """Essays pasted one after another, separated by a line that reads `---`."""
    essays, current = [], []
    for line in text.splitlines():
        if line.strip() == SEPARATOR:
            essays.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    essays.append("\n".join(current).strip())
    return [essay for essay in essays if essay]


def uploaded_essays(files) -> tuple[list[str], list[str]]:
    """The text of each uploaded .txt file, and what was wrong with the others."""
    essays, problems = [], []
    for upload in files:
        if not upload.name.lower().endswith(".txt") or upload.size > MAX_UPLOAD_BYTES:
            problems.append(f"{upload.name}: only .txt files up to 200 kB can be read.")
            continue
        try:
            essays.append(upload.read().decode("utf-8").strip())
        except UnicodeDecodeError:
            problems.append(f"{upload.name}: the file is not UTF-8 text.")
    return [essay for essay in essays if essay], problems


@login_required
def batch_new(request):
    values = {"title": "", "region": "", "essays": "", "run": True}
    errors = {}
    if request.method == "POST":
        values = {"title": request.POST.get("title", ""),
                  "region": request.POST.get("region", ""),
                  "essays": request.POST.get("essays", ""),
                  "run": request.POST.get("run") == "on"}
        essays = split_essays(values["essays"])
        uploaded, problems = uploaded_essays(request.FILES.getlist("files"))
        form = NewBatchSerializer(data={"title": values["title"], "region": values["region"],
                                        "essays": essays + uploaded})
        if form.is_valid() and not problems:
            batch = create_batch(request.user, **form.validated_data)
            if values["run"]:
                pipeline.request_pipeline(batch, pipeline.BATCH_ONLY)
            messages.success(request, f"Batch created with {batch.essays.count()} essays.")
            return redirect(batch)
        errors = {name: _messages(problem) for name, problem in form.errors.items()}
        if problems:
            errors.setdefault("essays", []).extend(problems)
    return render(request, "batches/new.html", {
        "values": values, "errors": errors, "regions": settings.INFERENCE["REGIONS"],
        "max_essays": MAX_ESSAYS, "max_chars": MAX_ESSAY_CHARS})


def _messages(problem) -> list[str]:
    if isinstance(problem, dict):
        return [f"Essay {int(i) + 1}: {e}" for i, es in problem.items() for e in es]
    return [str(e) for e in problem]


def grid_context(batch: Batch) -> dict:
    state = pipeline.read(batch)
    phases = []
    for phase in pipeline.PER_ESSAY:
        items = [state.item(phase, essay) for essay in state.essays]
        # Items that failed for good stay out of the Retry phase form: retrying them will not
        # help (the API still accepts them).
        phases.append({"phase": phase, "label": pipeline.PHASE_LABELS[phase],
                       "failed": [item for item in items if item.status == "failed"]})
    rows = [{"essay": essay, "items": [state.item(phase, essay) for phase in pipeline.PER_ESSAY],
             "left_out": state.left_out(essay)} for essay in state.essays]
    batch_only = state.item(pipeline.BATCH_ONLY)
    ranking = state.ranking()
    by_id = {essay.pk: essay for essay in state.essays}
    return {"batch": batch, "state": state, "rows": rows, "phases": phases,
            "batch_only": batch_only, "waiting_for": state.waiting_for(),
            "ranking": [{**entry, "essay": by_id.get(entry["essay_id"])}
                        for entry in ranking or []],
            "labels": pipeline.PHASE_LABELS, "max_reason": MAX_REASON_LENGTH,
            "not_requested": batch.requested_phase != pipeline.BATCH_ONLY}


@login_required
def batch_detail(request, batch_id):
    """The page, or (htmx polling) just the grid."""
    batch = _batch(request, batch_id)
    template = "batches/batch.html#grid" if request.htmx else "batches/batch.html"
    return render(request, template, grid_context(batch))


@login_required
@require_POST
def batch_run(request, batch_id):
    """Run every phase (the pipeline request, from the page)."""
    batch = _batch(request, batch_id)
    started = pipeline.request_pipeline(batch, pipeline.BATCH_ONLY)
    message = f"Pipeline running: {started} step{'s' if started != 1 else ''} started."
    return _answer(request, batch, "success", message)


@login_required
@require_POST
@page_throttle(RetryThrottle)
def phase_retry(request, batch_id, phase):
    """The Retry phase form: the phase's failed items (or the chosen essays), with a reason."""
    batch = _batch(request, batch_id)
    chosen = request.POST.getlist("essays")
    essay_ids = chosen if chosen and phase != pipeline.BATCH_ONLY else None
    try:
        report = pipeline.retry_phase(batch, phase, by=request.user, channel=Channel.WEB,
                                      reason=request.POST.get("reason", ""),
                                      essay_ids=essay_ids)
        skipped = sum(report["skipped"].values())
        level = "success" if report["retried"] else "error"
        message = (f"Retrying {len(report['retried'])} of {pipeline.PHASE_LABELS[phase]}"
                   + (f"; {skipped} skipped ({_skips(report)})" if skipped else "") + ".")
    except RetryRefused as refused:
        level, message = "error", refused.message
    return _answer(request, batch, level, message)


def _skips(report) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in report["skipped"].items()
                     if n)


def _answer(request, batch, level, message):
    if request.htmx:
        return toast(render(request, "batches/batch.html#grid", grid_context(batch)), level,
                     message)
    getattr(messages, level)(request, message)
    return redirect(batch)


@login_required
def item_history(request, batch_id, phase, essay_id=None):
    """Every attempt and manual retry of one step (a phase of an essay, or the batch-only
    phase)."""
    batch = _batch(request, batch_id)
    state = pipeline.read(batch)
    essay = next((e for e in state.essays if e.pk == essay_id), None)
    if phase not in pipeline.PHASES or (essay_id is not None and essay is None) or (
            (phase == pipeline.BATCH_ONLY) != (essay_id is None)):
        raise Http404("No such step in this batch.")
    item = state.item(phase, essay)
    chain = history_of(item.chain.root.pk) if item.operation is not None else item.chain
    return render(request, "batches/history.html", {"batch": batch, "item": item,
                                                    "chain": chain, "essay": essay,
                                                    "label": pipeline.PHASE_LABELS[phase]})

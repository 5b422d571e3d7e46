"""Job pages: the list, a new job, and the live region × question grid with per-cell retry,
"Retry all failed" (preview first), each cell's history and the job's retry metrics. Every
action also works as a plain form without JavaScript."""
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from executions import grid, services
from executions.api import NewJobSerializer, with_progress
from executions.models import Execution, Job
from operations import metrics
from operations.api.views import RetryThrottle
from operations.models import Channel
from operations.services import MAX_REASON_LENGTH, RetryRefused, check_reason
from operations.views import page_throttle, toast

# A poll asks for the cells changed since its last answer, with this much overlap: a change
# committed late with an earlier timestamp is sent again rather than missed.
POLL_OVERLAP = timedelta(seconds=5)


def _job(request, job_id) -> Job:
    return get_object_or_404(Job, pk=job_id, owner=request.user)


def _execution(request, job_id, execution_id) -> Execution:
    return get_object_or_404(Execution.objects.select_related("job"), pk=execution_id,
                             job_id=job_id, job__owner=request.user)


@login_required
def job_list(request):
    jobs = with_progress(Job.objects.filter(owner=request.user)[:50])
    return render(request, "executions/list.html", {"jobs": jobs})


@login_required
def job_new(request):
    """The new-job form: regions to choose from, one question per line."""
    errors, values = {}, {"title": "", "model": settings.INFERENCE["MODEL"], "regions": [],
                          "questions": ""}
    if request.method == "POST":
        values = {"title": request.POST.get("title", ""), "model": request.POST.get("model", ""),
                  "regions": request.POST.getlist("regions"),
                  "questions": request.POST.get("questions", "")}
        form = NewJobSerializer(data={
            **values, "questions": [line.strip() for line in values["questions"].splitlines()
                                    if line.strip()]})
        if form.is_valid():
            data = form.validated_data
            job = services.create_job(request.user, title=data["title"],
                                      model=data.get("model") or settings.INFERENCE["MODEL"],
                                      regions=data["regions"], questions=data["questions"])
            messages.success(request, f"Job started: {len(job.regions)} regions × "
                                      f"{len(data['questions'])} questions.")
            return redirect(job)
        errors = {name: [str(e) for e in _flatten(problems)] for name, problems in form.errors.items()}
    return render(request, "executions/new.html", {
        "values": values, "errors": errors, "regions": settings.INFERENCE["REGIONS"]})


def _flatten(problems):
    """DRF errors of a list field come as {index: [errors]}; a page shows them in one list."""
    if isinstance(problems, dict):
        return [f"Line {int(i) + 1}: {e}" for i, es in problems.items() for e in es]
    return problems


def grid_context(job: Job, cells=None) -> dict:
    cells = grid.cells_of(job) if cells is None else cells
    questions = list(job.questions.all())
    by_cell = {(c.execution.question_index, c.execution.region): c for c in cells}
    rows = [{"question": q, "cells": [by_cell[(q.index, region)] for region in job.regions]}
            for q in questions]
    return {"job": job, "rows": rows, "progress": grid.progress_of(cells),
            "regions": grid.by_region(cells, job.regions), "since": _watermark(cells),
            "metrics": metrics.summary(kind="executions.answer", key="region",
                                       where={"input__job_id": job.pk})}


def _watermark(cells) -> str:
    """When the newest change the page has seen happened, less the overlap."""
    times = [c.operation.updated_at for c in cells if c.operation is not None]
    return (max(times) - POLL_OVERLAP).isoformat() if times else ""


@login_required
def job_detail(request, job_id):
    return render(request, "executions/job.html", grid_context(_job(request, job_id)))


@login_required
def job_cells(request, job_id):
    """The poll (htmx): only the cells changed since `since`, the progress, and the next poll
    (which stops once nothing is pending or running)."""
    job = _job(request, job_id)
    cells = grid.cells_of(job)
    since = parse_datetime(request.GET.get("since", "") or "")
    changed = [c for c in cells if since is None or (
        c.operation is not None and c.operation.updated_at > since)]
    return render(request, "executions/_poll.html", {**grid_context(job, cells),
                                                     "changed": changed})


def _respond_with_cell(request, job, cell, level, message):
    response = render(request, "executions/_cell_answer.html",
                      {**grid_context(job), "cell": cell})
    return toast(response, level, message)


@login_required
@require_POST
@page_throttle(RetryThrottle)
def cell_retry(request, job_id, execution_id):
    """The Retry (n/3) button of a cell: the cell (htmx) or the page again (no JavaScript)."""
    execution = _execution(request, job_id, execution_id)
    try:
        cell = services.retry_cell(execution, by=request.user, channel=Channel.WEB,
                                   reason=request.POST.get("reason", ""))
        level, message = "success", (f"Retry started: {execution.region} × question "
                                     f"{execution.question_index + 1}.")
    except RetryRefused as refused:
        if refused.status == 404:
            raise Http404(refused.message) from None
        [cell] = grid.cells_for([execution])
        level, message = "error", refused.message
    if request.htmx:
        return _respond_with_cell(request, execution.job, cell, level, message)
    getattr(messages, level)(request, message)
    return redirect(execution.job)


def preview_text(cells, report) -> str:
    """ "7 failed: 5 timeout, 2 error; 1 at its retry limit will be skipped." """
    failed = Counter(c.status for c in cells if c.status in grid.RETRYABLE)
    total = sum(failed.values())
    if not total:
        return "Nothing has failed: there is nothing to retry."
    parts = ", ".join(f"{n} {status}" for status, n in failed.most_common())
    text = f"{total} failed: {parts}"
    skipped = [f"{n} {_skip_phrase(reason, n)}" for reason, n in report["skipped"].items() if n]
    return text + ("; " + ", ".join(skipped) + " will be skipped." if skipped else ".")


def _skip_phrase(reason: str, n: int) -> str:
    return {"retry_limit_reached": "at its retry limit" if n == 1 else "at their retry limit",
            "already_retried": "already being retried", "input_missing": "with its input gone",
            "not_failed": "not failed"}.get(reason, reason.replace("_", " "))


@login_required
@page_throttle(RetryThrottle)
def job_retry_failed(request, job_id):
    """"Retry all failed": GET shows the preview (a dry run), POST retries (staggered)."""
    job = _job(request, job_id)
    cells = grid.cells_of(job)
    if request.method == "POST":
        reason = request.POST.get("reason", "")
        try:
            check_reason(reason)
            report = services.retry_failed_cells(job, by=request.user, channel=Channel.WEB,
                                                 reason=reason)
            level = "success" if report["retried"] else "error"
            message = _report_text(report)
        except RetryRefused as refused:
            report, level, message = None, "error", refused.message
        if request.htmx:
            response = render(request, "executions/_bulk_result.html",
                              {**grid_context(job), "report": report, "message": message})
            return toast(response, level, message)
        getattr(messages, level)(request, message)
        return redirect(job)
    report = services.retry_failed_cells(job, by=request.user, channel=Channel.WEB,
                                         dry_run=True)
    template = "executions/retry_preview.html#preview" if request.htmx else \
        "executions/retry_preview.html"
    return render(request, template, {"job": job, "report": report,
                                      "preview": preview_text(cells, report),
                                      "max_reason": MAX_REASON_LENGTH})


def _report_text(report) -> str:
    retried = len(report["retried"])
    skipped = sum(report["skipped"].values())
    text = f"Retried {retried}" + (f"; skipped {skipped}" if skipped else "")
    details = ", ".join(f"{n} {reason.replace('_', ' ')}"
                        for reason, n in report["skipped"].items() if n)
    return text + (f" ({details})." if details else ".")


@login_required
def cell_history(request, job_id, execution_id):
    """Every attempt and every manual retry of one cell."""
    execution = _execution(request, job_id, execution_id)
    cell = grid.cell_with_history(execution)
    question = execution.job.questions.get(index=execution.question_index)
    template = "executions/history.html#history" if request.htmx else "executions/history.html"
    return render(request, template, {"job": execution.job, "cell": cell, "question": question,
                                      "now": timezone.now()})

"""The acts of jobs: create one, give waiting cells their slot, retry a cell or every failed one."""
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from executions import grid
from executions.grid import Cell, cells_for, cells_of
from executions.models import Execution, Job, Question
from operations import events
from operations.models import Operation, Status
from operations.services import RetryRefused, already_retried, retry_failed, retry_operation, submit

# A cell waiting for its region holds its slot: the next cells do not start into an outage.
IN_FLIGHT = (Status.PENDING, Status.PROCESSING, Status.RETRY_SCHEDULED, Status.WAITING)


def concurrency() -> int:
    return settings.REBOUND["JOB_CONCURRENCY"]


def create_job(owner, *, title: str, model: str, regions: list[str], questions: list[str],
               slots: int | None = None, faults: dict | None = None) -> Job:
    """A job with its questions and one execution per (region, question); the first cells
    start at once, the rest as slots free up (see start_waiting_cells for the options)."""
    with transaction.atomic():
        job = Job.objects.create(owner=owner, title=title, model=model, regions=list(regions))
        Question.objects.bulk_create(Question(job=job, index=i, text=text)
                                     for i, text in enumerate(questions))
        Execution.objects.bulk_create(
            Execution(job=job, region=region, question_index=i)
            for i in range(len(questions)) for region in regions)
        start_waiting_cells(job.pk, slots=slots, faults=faults)
    return job


def start_waiting_cells(job_id, *, slots: int | None = None, faults: dict | None = None) -> int:
    """Give each free slot (REBOUND_JOB_CONCURRENCY in flight per job, or `slots`) to the next
    cell that has not started, in grid order. Called when a job is created and whenever a cell
    settles. `faults` {(region, question_index): error code} is for drills and the demo."""
    with transaction.atomic():
        # Slots are counted and taken under the job's row lock (PostgreSQL), so two cells
        # settling at once cannot both take the last slot; SQLite serialises writers anyway.
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return 0
        firsts = Execution.objects.filter(job=job, operation__isnull=False).values("operation_id")
        in_flight = Operation.objects.filter(Q(pk__in=firsts) | Q(root_id__in=firsts),
                                             status__in=IN_FLIGHT).count()
        free = (slots or concurrency()) - in_flight
        if free <= 0:
            return 0
        waiting = list(job.executions.filter(operation__isnull=True)[:free])
        for execution in waiting:
            input = {"job_id": job.pk, "execution_id": execution.pk, "region": execution.region,
                     "question_index": execution.question_index}
            fault = (faults or {}).get((execution.region, execution.question_index))
            if fault:
                input["fault"] = fault
            operation = submit("executions.answer", job.owner, input,
                               dedupe_key=f"executions.answer:{execution.pk}")
            Execution.objects.filter(pk=execution.pk, operation__isnull=True).update(
                operation=operation)
        return len(waiting)


def retry_cell(execution: Execution, *, by, channel: str, reason: str = "",
               staff: bool = False) -> Cell:
    """Retry one failed, timed-out or errored cell; returns the cell as it is now.
    RetryRefused: not_failed / already_retried 409, retry_limit_reached 429, ..."""
    [cell] = cells_for([execution])
    operation = cell.operation
    if operation is None or operation.status != Status.FAILED:
        if operation is not None and operation.is_retry and not operation.is_terminal:
            raise already_retried(operation)
        raise RetryRefused(
            "not_failed", 409,
            f"Only a failed, timed-out or errored question can be retried; this one is "
            f"{cell.status}.", {"current_status": cell.status})
    retry_operation(operation.pk, by=by, channel=channel, reason=reason, staff=staff)
    return cells_for([Execution.objects.get(pk=execution.pk)])[0]


def failed_operations(cells) -> list[Operation]:
    """The operation of every cell whose chain ended in failure, in grid order."""
    return [cell.operation for cell in cells
            if cell.operation is not None and cell.operation.status == Status.FAILED]


def retry_failed_cells(job: Job, *, by, channel: str, reason: str = "", dry_run=False,
                       staff: bool = False) -> dict:
    """The engine's bulk retry over the job's failed cells (staggered), with the report."""
    return retry_failed(failed_operations(cells_of(job)), by=by, channel=channel,
                        reason=reason, dry_run=dry_run, staff=staff)


def announce_if_finished(job_id) -> bool:
    """job.finished, when every cell has settled (in the follow-up that settled the last one;
    called after start_waiting_cells, which holds the job's row lock, so two cells settling at
    once see each other). A job finishes again after a manual retry: the event's key counts
    the job's operations, so each time it finishes is one event, however many ask."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return False
    cells = grid.cells_of(job)
    progress = grid.progress_of(cells)
    if progress.busy or not cells:
        return False
    runs = sum(cell.chain.latest.retry_number + 1 for cell in cells if cell.operation)
    counts = {status: n for status, n in progress.counts.items() if n}
    events.emit("job.finished", job.owner_id,
                {"job": {"id": job.pk, "title": job.title, "counts": counts}},
                key=f"job.finished:{job.pk}:{runs}")
    return True

"""A job's grid, read in a constant number of queries: each cell's execution, the chain that
speaks for it now, and what the user sees (status, answer, error, retry state)."""
from collections import Counter
from dataclasses import dataclass

from executions.models import Execution, Job
from operations.chains import NOT_STARTED, Chain, NotStarted, history_of, latest_of
from operations.errors import what_to_do
from operations.models import Status

STATUSES = ("pending", "running", "waiting", "completed", "failed", "timeout", "error")
RETRYABLE = ("failed", "timeout", "error")
# A failed cell is "timeout" when the provider or the attempt ran out of time, "error" when
# the provider refused or answered something unreadable (retrying by itself would not help),
# and "failed" when transient errors used up the automatic budget.
TIMEOUT_CODES = {"ai_timeout", "timed_out"}
ERROR_CODES = {"ai_rejected", "ai_bad_response", "invalid_input", "internal_error",
               "input_missing"}


def user_status(status: str, attempt_count: int, error_code: str) -> str:
    """What a cell's user sees, from the status of the operation that speaks for it now."""
    if status == Status.PENDING:
        return "pending"
    if status == Status.RETRY_SCHEDULED:
        # A staggered retry waiting for its slot has not run; a backoff between attempts has.
        return "running" if attempt_count else "pending"
    if status == Status.PROCESSING:
        return "running"
    if status == Status.WAITING:
        return "waiting"  # for its region to answer again: nothing to retry
    if status == Status.COMPLETED:
        return "completed"
    if error_code in TIMEOUT_CODES:
        return "timeout"
    if error_code in ERROR_CODES:
        return "error"
    return "failed"


@dataclass
class Cell:
    execution: Execution
    chain: Chain | NotStarted

    @property
    def operation(self):
        """The operation that speaks for the cell now, if it has started."""
        return self.chain.latest

    @property
    def status(self) -> str:
        op = self.operation
        if op is None:
            return "pending"
        return user_status(op.status, op.attempt_count, op.error_code)

    @property
    def is_done(self) -> bool:
        return self.status not in ("pending", "running", "waiting")

    @property
    def waiting(self) -> str | None:
        """What the cell waits for, if it waits."""
        op = self.operation
        return op.waiting_message if op is not None and op.status == Status.WAITING else None

    @property
    def answer(self) -> str | None:
        op = self.operation
        if op is None or op.status != Status.COMPLETED:
            return None
        return (op.result or {}).get("answer")

    @property
    def error(self) -> dict | None:
        op = self.operation
        if op is None or op.status != Status.FAILED:
            return None
        return {"code": op.error_code, "message": op.error_message,
                "what_to_do": what_to_do(op.error_code), "reference": op.reference}

    @property
    def can_retry(self) -> bool:
        return (self.status in RETRYABLE and self.operation.status == Status.FAILED
                and self.chain.retry_count < self.chain.max_retries)

    @property
    def at_limit(self) -> bool:
        return self.status in RETRYABLE and self.chain.retry_count >= self.chain.max_retries

    @property
    def next_retry_label(self) -> str:
        return f"Retry ({self.chain.retry_count + 1}/{self.chain.max_retries})"


def cells_for(executions) -> list[Cell]:
    """The cells of these executions with the chain that speaks for each now (one query
    for the chains, whatever the number of cells)."""
    executions = list(executions)
    chains = latest_of(e.operation_id for e in executions if e.operation_id)
    return [Cell(e, chains.get(e.operation_id) or NOT_STARTED) for e in executions]


def cells_of(job: Job) -> list[Cell]:
    """Every cell of the job, question by question, region by region (two queries)."""
    return cells_for(job.executions.all())


def cell_with_history(execution: Execution) -> Cell:
    """One cell with its whole chain: every operation, attempt and manual retry."""
    if execution.operation_id is None:
        return Cell(execution, NOT_STARTED)
    return Cell(execution, history_of(execution.operation_id))


@dataclass
class Progress:
    counts: dict
    done: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100

    @property
    def busy(self) -> bool:
        return self.done < self.total


def progress_of(cells) -> Progress:
    counts = Counter(cell.status for cell in cells)
    done = sum(n for status, n in counts.items() if status not in ("pending", "running", "waiting"))
    return Progress({status: counts.get(status, 0) for status in STATUSES}, done, len(cells))


def by_region(cells, regions) -> list[dict]:
    """done/total per region, in the job's region order."""
    rows = []
    for region in regions:
        progress = progress_of([c for c in cells if c.execution.region == region])
        rows.append({"region": region, "done": progress.done, "total": progress.total,
                     "counts": progress.counts})
    return rows

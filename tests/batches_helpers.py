"""Batches in tests: essays long enough to judge, running a pipeline in the process, and the
I5 check (one output per batch, phase and essay, exactly when its step completed)."""
from collections import Counter

from batches import pipeline
from batches.models import Batch, PhaseOutput
from operations.models import Operation, Status
from tests.running import make_due, run_until_settled

WORDS = ("retry backoff jitter lease worker queue broker outage latency provider timeout "
         "checkpoint resume idempotent duplicate delivery").split()


def essay(n: int, words: int = 80) -> str:
    """A distinct essay of `words` words (sentences of ten)."""
    picked = [WORDS[(n * 7 + i * (n + 3)) % len(WORDS)] for i in range(words)]
    sentences = [" ".join(picked[i:i + 10]).capitalize() + "." for i in range(0, words, 10)]
    return f"Essay number {n}. " + " ".join(sentences)


def drain(batch_id, max_rounds=500):
    """Run every waiting operation of the batch (continuations start the next ones) until none
    waits; automatic retries are made due at once."""
    for _ in range(max_rounds):
        operation = Operation.objects.filter(
            kind__startswith="batches.", input__batch_id=batch_id,
            status__in=[Status.PENDING, Status.RETRY_SCHEDULED]).order_by("created_at").first()
        if operation is None:
            return
        make_due(operation)
        run_until_settled(operation)
    raise AssertionError("the batch did not settle")


def assert_one_output_per_step():
    """I5: each (batch, phase, essay) has at most one output, written by the operation that
    completed its chain, and a completed chain always has its output."""
    outputs = PhaseOutput.objects.all()
    assert max(Counter((o.batch_id, o.phase, o.essay_id) for o in outputs).values(),
               default=1) == 1
    for batch in Batch.objects.all():
        state = pipeline.read(batch)
        for item in state.items.values():
            completed = item.status == "completed"
            assert (item.output is not None) == completed, (item.phase, item.essay)
            if completed:
                assert item.output.operation_id == item.operation.pk

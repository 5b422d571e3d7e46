"""Running operations inside a test process, and racing threads against each other."""
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.db import connections
from django.utils import timezone

from operations import dispatcher, runner
from operations.models import Operation, Status


def run_until_settled(operation, max_deliveries=6):
    """Deliver an operation, and each automatic retry as soon as it is due (time is skipped
    by backdating the due time, not by sleeping)."""
    for _ in range(max_deliveries):
        runner.run(operation.pk)
        operation.refresh_from_db()
        if operation.status != Status.RETRY_SCHEDULED:
            return operation
        make_due(operation)
        dispatcher.release_due()
    return operation


def make_due(operation) -> None:
    Operation.objects.filter(pk=operation.pk).update(
        next_attempt_at=timezone.now() - timedelta(milliseconds=1))


def in_threads(count, work):
    """Run `work(i)` in `count` threads released at once; each closes its connection."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        try:
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))

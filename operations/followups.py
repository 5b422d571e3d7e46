"""What happens once an operation has reached its final state: the kind's continuation
(`on_success` / `on_failure`) and the owner's in-app notification (emails and staff alerts
are sent by the dispatcher, which batches them into throttled digests).

The final status write sets `followup_due` in the same UPDATE (so it is fenced like that write:
a zombie or a duplicate delivery never sets it). The worker then runs the follow-ups at once; if
it dies first, the dispatcher's sweep runs them. Either way they run in a transaction that
starts by clearing the flag with a conditional UPDATE: whoever clears it runs them, and if they
raise, the transaction rolls back and the flag stays set for the sweep to try again.
"""
import logging

from django.db import transaction
from django.db.models.functions import Now

from operations import events, kinds, notifications
from operations.models import Operation, Status, db_now_plus

log = logging.getLogger("rebound.followups")

# The worker runs follow-ups right after the final write; the sweep takes over only from
# operations whose follow-ups are still due this long after it.
SWEEP_AFTER_SECONDS = 5.0
BATCH = 200


def run(operation_id) -> bool:
    """Run an operation's follow-ups if they are still due. True if this call ran them."""
    try:
        with transaction.atomic():
            won = Operation.objects.filter(pk=operation_id, followup_due=True).update(
                followup_due=False)
            if not won:
                return False  # another process ran them, or there are none
            operation = Operation.objects.select_related("owner").get(pk=operation_id)
            _continue(operation)
            if not operation.kind_spec.quiet:
                notifications.record(operation)
                _announce(operation)
    except Exception:  # noqa: BLE001 - a continuation's bug must not lose the follow-up
        log.exception("follow-ups of operation=%s failed; the sweep tries again", operation_id)
        Operation.objects.filter(pk=operation_id, followup_due=True).update(updated_at=Now())
        return False
    return True


def _continue(operation: Operation) -> None:
    kind = kinds.find(operation.kind)
    callback = {Status.COMPLETED: kind.on_success, Status.FAILED: kind.on_failure}.get(
        operation.status)
    if callback is not None:
        callback(operation)


def _announce(operation: Operation) -> None:
    if operation.status == Status.FAILED:
        events.about_operation("operation.failed", operation)
    elif operation.status == Status.COMPLETED and operation.retry_number:
        events.about_operation("operation.recovered", operation)


def run_due() -> int:
    """The sweep: follow-ups left due by a worker that died after its final write."""
    due = Operation.objects.filter(followup_due=True,
                                   updated_at__lt=db_now_plus(-SWEEP_AFTER_SECONDS))
    return sum(run(pk) for pk in due.values_list("pk", flat=True)[:BATCH])

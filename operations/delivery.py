"""Hands operations to django-q2. Enqueue happens after commit; a failed enqueue is logged, not
raised: the row stays `pending` and the dispatcher's sweep delivers it later."""
import logging

from django.db import transaction
from django_q.brokers import get_broker
from django_q.tasks import async_task

log = logging.getLogger("rebound.delivery")


_broker = None


def _shared_broker():
    # One broker per process: django-q2 would otherwise open a new connection per enqueue.
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def enqueue_now(operation_id) -> bool:
    """Hand one operation to django-q2. The engine keeps the history, so django-q2's own
    result row is not saved."""
    try:
        async_task("operations.tasks.run_operation", str(operation_id),
                   q_options={"task_name": f"op-{operation_id}", "ack_failure": True,
                              "save": False, "broker": _shared_broker()})
    except Exception:  # noqa: BLE001 - a broker outage must not fail the request
        log.exception("could not enqueue operation=%s; the sweep will deliver it", operation_id)
        return False
    return True


def enqueue_on_commit(operation_id) -> None:
    """Deliver once the surrounding transaction commits (at once when there is none)."""
    transaction.on_commit(lambda: enqueue_now(operation_id), robust=True)

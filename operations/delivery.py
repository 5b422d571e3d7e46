"""Hands operations to django-q2. Enqueue happens after commit; a failed enqueue is logged, not
raised: the row stays `pending` and the dispatcher's sweep delivers it later.

A message wakes a worker, which runs the operation it names and then drains the queue (see
`runner.run`). So while as many messages wait in the broker as there are workers, another one
would only be taken after the queue has been drained past its operation, and find it done: no
message is sent then (a round trip saved on each side). Nothing is stranded: a waiting message
was sent before this operation committed, so the worker that takes it drains after the
commit; a worker whose time slice ends with work left sends one message on (`hand_off`); and
the dispatcher's sweep re-delivers anything pending for REBOUND_REDELIVER_AFTER.
"""
import logging
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

log = logging.getLogger("rebound.delivery")


_broker = None


def _shared_broker():
    # One broker per process: django-q2 would otherwise open a new connection per enqueue.
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def room(broker) -> int | None:
    """How many more messages would wake a worker that is not woken yet (each drains the
    queue after this commit); None when workers do not drain: one message, one operation."""
    if settings.REBOUND["DRAIN_SECONDS"] <= 0:
        return None
    return max(settings.Q_CLUSTER["workers"] - untaken(broker), 0)


def untaken(broker) -> int:
    """Messages no worker has taken yet (the ORM broker keeps taken ones, locked, until they
    are acknowledged)."""
    if isinstance(broker, ORM):
        # django-q2's queue_size() without its close_old_connections(), which costs this
        # process a health-check query on its next statement: one count, one round trip.
        return OrmQ.objects.using(Conf.ORM).filter(key=broker.list_key,
                                                   lock__lte=timezone.now()).count()
    return broker.queue_size()


def enqueue_now(operation_id, *, coalesce: bool = True) -> bool:
    """Hand one operation to django-q2 (`operation_id` None: wake a worker to drain the
    queue), unless enough messages already wait to wake every worker (`coalesce`). The
    engine keeps the history, so django-q2's own result row is not saved."""
    try:
        broker = _shared_broker()
        if coalesce and room(broker) == 0:
            return True  # a message that waits already wakes a worker that will drain it
        async_task("operations.tasks.run_operation",
                   "" if operation_id is None else str(operation_id),
                   q_options={"task_name": f"op-{operation_id or 'drain'}",
                              "ack_failure": True, "save": False, "broker": broker})
    except Exception:  # noqa: BLE001 - a broker outage must not fail the request
        log.exception("could not enqueue operation=%s; the sweep will deliver it", operation_id)
        return False
    return True


def hand_off() -> bool:
    """A worker's time slice ended with work still pending: wake the next one."""
    return enqueue_now(None)


def enqueue_on_commit(operation_id) -> None:
    """Deliver once the surrounding transaction commits (at once when there is none)."""
    transaction.on_commit(lambda: enqueue_now(operation_id), robust=True)


def enqueue_all_on_commit(operation_ids) -> None:
    """Deliver many operations committed together: one message each when workers do not
    drain, otherwise only the messages that wake the workers not woken yet."""
    ids = list(operation_ids)

    def enqueue():
        try:
            free = room(_shared_broker())
        except Exception:  # noqa: BLE001 - a broker outage must not fail the request
            log.exception("could not count the broker's messages; the sweep delivers")
            return
        for operation_id in ids if free is None else ids[:free]:
            enqueue_now(operation_id, coalesce=False)

    transaction.on_commit(enqueue, robust=True)

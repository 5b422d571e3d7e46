"""Hands operations to django-q2. Enqueue happens after commit; a failed enqueue is logged, not
raised: the row stays `pending` and the dispatcher's sweep delivers it later.

A message wakes a worker, which runs the operation it names and then drains the queue (see
`runner.run`). So while as many messages wait in the broker as there are workers, another one
would only be taken after the queue has been drained past its operation, and find it done: no
message is sent then (a round trip saved on each side). Nothing is stranded: a waiting message
was sent before this operation committed, so the worker that takes it drains after the
commit; a worker whose time slice ends with work left sends one message on (`hand_off`); and
the dispatcher's sweep re-delivers anything pending for REBOUND_REDELIVER_AFTER.

On the Redis broker, a worker that is draining counts too: it says it is awake when it takes a
message, and before it goes back to sleep it says so and then looks at the queue once more. A
producer counts awake workers after its commit, so any worker it counted looks after that
commit. Busy workers then take new work without one message per operation. A worker killed
while awake counts for REBOUND_DRAIN_SECONDS + 1 s at most (the dispatcher forgets it sooner
when it recovers the operation it held); counting it only ever saves a message that an awake
worker makes unnecessary, so nothing waits longer than that.
"""
import logging

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

from operations import prepared

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
    return max(settings.Q_CLUSTER["workers"] - woken(broker), 0)


def woken(broker) -> int:
    """Messages no worker has taken yet, plus (on Redis) workers awake: each will look at the
    queue after this commit. One round trip."""
    if isinstance(broker, ORM):
        # Messages the ORM broker keeps unlocked (taken ones stay, locked, until acknowledged).
        # django-q2's queue_size() without its close_old_connections(), which costs this
        # process a health-check query on its next statement; prepared where it can be.
        if Conf.ORM == DEFAULT_DB_ALIAS and prepared.on_postgres():
            return prepared.fetchone(_UNTAKEN, [broker.list_key, timezone.now()])[0]
        return OrmQ.objects.using(Conf.ORM).filter(key=broker.list_key,
                                                   lock__lte=timezone.now()).count()
    if isinstance(broker, Redis):
        untaken, awake = _run(broker, _WOKEN,
                              keys=[broker.list_key, _awake_key(broker), _nudge_key(broker)],
                              args=[settings.Q_CLUSTER["workers"]])
        return untaken + awake
    return broker.queue_size()


_UNTAKEN = f"SELECT count(*) FROM {OrmQ._meta.db_table} WHERE key = %s AND lock <= %s".encode()

# The awake workers of a queue: a sorted set of holders, scored by when their word expires
# (Redis's clock, so hosts' clocks never matter). Counting them also nudges one that waits for
# work (`nudged`); at most as many nudges as workers are kept.
_NOW = "local t = redis.call('TIME'); local now = t[1] + t[2] / 1000000\n"
_WOKEN = _NOW + """local awake = redis.call('ZCOUNT', KEYS[2], now, '+inf')
if awake > 0 then
    redis.call('RPUSH', KEYS[3], 1)
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
    redis.call('EXPIRE', KEYS[3], 60)
end
return {redis.call('LLEN', KEYS[1]), awake}"""
_AWAKE = _NOW + """redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])"""
_scripts: dict = {}


def _run(broker, source: str, keys: list, args: list):
    """Run a Lua script on the broker's Redis (sent once, then called by its digest)."""
    if source not in _scripts:
        _scripts[source] = broker.connection.register_script(source)
    return _scripts[source](keys=keys, args=args, client=broker.connection)


def _awake_key(broker) -> str:
    return f"{broker.list_key}:awake"


def _nudge_key(broker) -> str:
    return f"{broker.list_key}:nudge"


def nudged(seconds: float) -> bool:
    """Wait up to `seconds` for a producer to say it committed work (Redis broker; elsewhere
    False at once): an awake worker with nothing to do waits here rather than polling the
    database or going back to sleep."""
    try:
        broker = _shared_broker()
        if not isinstance(broker, Redis) or seconds <= 0:
            return False
        return broker.connection.blpop([_nudge_key(broker)], timeout=seconds) is not None
    except Exception:  # noqa: BLE001 - then it sleeps, and producers send a message
        log.warning("could not wait for work on the broker")
        return False


def awake(holder: str) -> None:
    """This worker drains the queue now: it will look at the queue again before it sleeps."""
    try:
        broker = _shared_broker()
        if isinstance(broker, Redis) and settings.REBOUND["DRAIN_SECONDS"] > 0:
            seconds = settings.REBOUND["DRAIN_SECONDS"] + 1.0
            _run(broker, _AWAKE, keys=[_awake_key(broker)], args=[holder, seconds])
    except Exception:  # noqa: BLE001 - not counted awake: producers send a message instead
        log.warning("could not say worker %s is awake", holder)


def asleep(holder: str) -> None:
    """This worker (or a dead one) will not look at the queue again until a message comes.
    A worker says it before its last look, never after."""
    try:
        broker = _shared_broker()
        if isinstance(broker, Redis) and settings.REBOUND["DRAIN_SECONDS"] > 0:
            broker.connection.zrem(_awake_key(broker), holder)
    except Exception:  # noqa: BLE001 - its word expires by itself
        log.warning("could not say worker %s is asleep", holder)


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

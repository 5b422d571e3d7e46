"""Engine benchmark: Rebound beside raw django-q2 `async_task`, same broker, same database.

    .venv/bin/python bench/engine_bench.py            # ORM broker on PostgreSQL, then Redis
    .venv/bin/python bench/engine_bench.py --brokers orm --n 30

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated) and, for
the Redis rows, Redis at 127.0.0.1:6379. Prints one markdown table; measures:
(a) retry latency: POST /api/v1/operations/{id}/retry -> attempt started, vs async_task -> started
(b) backoff precision: scheduled vs actual start of the 1 s / 2 s / 4 s retries
(c) throughput of no-op operations vs no-op tasks
(d) recovery: worker SIGKILL -> next attempt started (live host; lost host = lease expiry)
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/rebound_bench"
REDIS = "redis://127.0.0.1:6379/15"


def broker_env(broker: str) -> dict:
    return {**os.environ, "DATABASE_URL": PG, "REDIS_URL": REDIS if broker == "redis" else "",
            "REBOUND_WORKERS": "2", "REBOUND_Q_SAVE_LIMIT": "0", "REBOUND_LEASE_SECONDS": "30",
            "REBOUND_RETRY_THROTTLE": "100000/min", "DJANGO_SETTINGS_MODULE": "config.settings",
            "REBOUND_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}


# --- one broker, run in its own process (django-q2 reads its settings once) ---------------

def measure(broker: str, n: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if broker == "redis":
        import redis

        redis.from_url(REDIS).flushdb()
    env = broker_env(broker)
    procs = [subprocess.Popen([sys.executable, "manage.py", cmd], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd in ("qcluster", "dispatcher")]
    try:
        user = warm_up()
        return {"retry_latency": retry_latency(user, n), "backoff": backoff_precision(user),
                "throughput": throughput(user, 10 * n), "recovery": recovery(user)}
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait(predicate, timeout=120.0, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step did not finish in time")


def warm_up():
    from django.contrib.auth import get_user_model

    from operations.models import Operation, Status
    from operations.services import submit

    user, _ = get_user_model().objects.get_or_create(username="bench")
    operation = submit("diagnostics.noop", user, {})
    wait(lambda: Operation.objects.filter(pk=operation.pk, status=Status.COMPLETED).exists(), 60)
    return user


def raw_start_latency():
    from django_q.models import Task
    from django_q.tasks import async_task

    started = time.time()
    task_id = async_task("bench.tasks.stamp")
    task = wait(lambda: Task.objects.filter(id=task_id).first())
    return task.result - started


def retry_latency(user, n):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from operations.models import Attempt, Operation, Status

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    ours, raw = [], []
    for _ in range(n):
        failed = Operation.objects.create(kind="diagnostics.noop", owner=user, status=Status.FAILED,
                                          attempt_count=1, error_code="ai_unavailable")
        started = time.time()
        child_id = client.post(f"/api/v1/operations/{failed.pk}/retry", format="json").json()["id"]
        attempt = wait(lambda: Attempt.objects.filter(operation_id=child_id).first())
        ours.append(attempt.started_at.timestamp() - started)
        raw.append(raw_start_latency())
    return {"ours": summary(ours), "raw": summary(raw)}


def backoff_precision(user, count=10):
    from operations.models import Operation, Status
    from operations.services import submit

    ids = [submit("diagnostics.backoff", user, {}).pk for _ in range(count)]
    wait(lambda: Operation.objects.filter(pk__in=ids, status=Status.COMPLETED).count() == count,
         timeout=60, interval=0.2)
    errors = {1: [], 2: [], 4: []}
    for operation in Operation.objects.filter(pk__in=ids):
        attempts = list(operation.attempts.order_by("number"))
        for before, after in zip(attempts, attempts[1:]):
            due = before.finished_at.timestamp() + before.delay_seconds
            nominal = 2 ** (before.number - 1)
            errors[nominal].append(after.started_at.timestamp() - due)
    return {str(k): summary(v) for k, v in errors.items()}


def throughput(user, count, rounds=2):
    """No-op operations vs no-op tasks per second, alternating so neither goes first always."""
    from django.db import transaction
    from django_q.models import Task
    from django_q.tasks import async_task

    from operations.models import Operation, Status
    from operations.services import submit

    def completed():
        return Operation.objects.filter(kind="diagnostics.noop", status=Status.COMPLETED).count()

    def ours_once():
        # Both sides are watched with one cheap count, so watching costs them the same.
        before, started = completed(), time.time()
        with transaction.atomic():
            for _ in range(count):
                submit("diagnostics.noop", user, {})
        wait(lambda: completed() - before >= count, timeout=600, interval=0.1)
        return count / (time.time() - started)

    def raw_once():
        before, started = Task.objects.count(), time.time()
        for _ in range(count):
            async_task("bench.tasks.noop")
        wait(lambda: Task.objects.count() - before >= count, timeout=600, interval=0.1)
        return count / (time.time() - started)

    ours, raw = [], []
    for _ in range(rounds):
        raw.append(raw_once())
        ours.append(ours_once())
    return {"ours": statistics.mean(ours), "raw": statistics.mean(raw), "count": count * rounds}


def recovery(user, repeats=3):
    from operations.models import Attempt, Operation, Status
    from operations.services import submit

    def start_slow():
        operation = submit("diagnostics.sleep", user, {"seconds": 120, "slow_attempts": [1]})
        wait(lambda: Operation.objects.filter(pk=operation.pk, status=Status.PROCESSING).exists(),
             timeout=60)
        return Operation.objects.get(pk=operation.pk)

    def next_attempt_after(operation, killed):
        attempt = wait(lambda: Attempt.objects.filter(operation=operation, number=2).first(),
                       timeout=90, interval=0.01)
        return attempt.started_at.timestamp() - killed

    live = []
    for _ in range(repeats):
        operation = start_slow()
        pid = int(operation.lease_holder.split(":")[1])
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        live.append(next_attempt_after(operation, killed))
        time.sleep(2)  # let django-q2 replace the killed worker
    # A lost host: the dispatcher cannot see the holder's process, only the lease.
    operation = start_slow()
    pid = int(operation.lease_holder.split(":")[1])
    Operation.objects.filter(pk=operation.pk).update(lease_holder=f"lost-host:{pid}:0")
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    lost = next_attempt_after(operation, killed)
    return {"live": summary(live), "lost_host": lost}


def drain(broker: str, count: int = 2000) -> dict:
    """The peers' measure `a`: `count` no-ops queued with no worker running, then a cluster with
    2 worker slots (and the dispatcher) started; tasks per second from the first start to the
    queue drained (every operation completed, seen by a poll every 0.1 s, as the peers' harness
    polls its broker)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction
    from django.db.models import Min

    from operations.models import Attempt, Operation, Status
    from operations.services import submit

    call_command("migrate", verbosity=0)
    if broker == "redis":
        import redis

        redis.from_url(REDIS).flushdb()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    with transaction.atomic():
        ids = [submit("diagnostics.noop", user, {}).pk for _ in range(count)]
    env = broker_env(broker)
    spawned = time.time()
    procs = [subprocess.Popen([sys.executable, "manage.py", cmd], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd in ("qcluster", "dispatcher")]
    try:
        done = Operation.objects.filter(status=Status.COMPLETED)
        wait(lambda: done.count() >= count, timeout=900, interval=0.1)
        drained = time.time()
        # The broker still holds a delivery for each operation a worker drained itself: each
        # is a no-op (its claim finds nothing); how long until they are all gone, too.
        wait(lambda: broker_pending(broker) == 0, timeout=900, interval=0.1)
        broker_empty = time.time()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = Attempt.objects.filter(operation_id__in=ids).aggregate(t=Min("started_at"))["t"]
    return {"count": count, "tasks_per_s": count / (drained - first.timestamp()),
            "broker_empty_per_s": count / (broker_empty - first.timestamp()),
            "spawn_to_first_s": first.timestamp() - spawned,
            "attempts": Attempt.objects.filter(operation_id__in=ids).count()}


def summary(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {"median": statistics.median(values), "p95": p95, "max": values[-1], "n": len(values)}


# --- driver --------------------------------------------------------------------------------

def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute("DROP DATABASE IF EXISTS rebound_bench WITH (FORCE)")
        db.execute("CREATE DATABASE rebound_bench")


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def table(results: dict) -> str:
    rows = ["| measure | broker | Rebound | raw django-q2 | target | met |",
            "|---|---|---|---|---|---|"]
    for broker, r in results.items():
        name = "ORM / PostgreSQL" if broker == "orm" else "Redis"
        lat = r["retry_latency"]
        ratio = lat["ours"]["median"] / lat["raw"]["median"]
        rows.append(f"| (a) retry → attempt started, median | {name} | {ms(lat['ours']['median'])} "
                    f"| {ms(lat['raw']['median'])} | ≤ 1.3× raw | {ratio:.2f}× {'yes' if ratio <= 1.3 else 'no'} |")
        rows.append(f"| (a) retry → attempt started, p95 | {name} | {ms(lat['ours']['p95'])} "
                    f"| {ms(lat['raw']['p95'])} | | |")
        for delay, s in r["backoff"].items():
            ok = abs(s["p95"]) <= 0.3
            rows.append(f"| (b) backoff {delay} s: start − scheduled, median / p95 (n={s['n']}) "
                        f"| {name} | {ms(s['median'])} / {ms(s['p95'])} | – | p95 ≤ 300 ms | "
                        f"{'yes' if ok else 'no'} |")
        tp = r["throughput"]
        share = tp["ours"] / tp["raw"]
        rows.append(f"| (c) no-op throughput ({tp['count']} ops) | {name} | {tp['ours']:.0f}/s "
                    f"| {tp['raw']:.0f}/s | ≥ 50 % of raw | {share:.0%} {'yes' if share >= 0.5 else 'no'} |")
        rec = r["recovery"]
        rows.append(f"| (d) worker SIGKILL → next attempt, live host, median / max (n={rec['live']['n']}) "
                    f"| {name} | {ms(rec['live']['median'])} / {ms(rec['live']['max'])} "
                    f"| {'never (retry=timeout+60 s)' if broker == 'orm' else 'never'} | ≤ 2 s | "
                    f"{'yes' if rec['live']['max'] <= 2 else 'no'} |")
        rows.append(f"| (d) lost host (30 s lease) → next attempt | {name} | {rec['lost_host']:.1f} s "
                    f"| – | ≤ 35 s | {'yes' if rec['lost_host'] <= 35 else 'no'} |")
    return "\n".join(rows)


def broker_pending(broker: str) -> int:
    from django.conf import settings
    from django_q.brokers import get_broker

    return get_broker(settings.Q_CLUSTER["name"]).queue_size() or 0


def drain_runs(broker: str, runs: int) -> list[dict]:
    results = []
    for _ in range(runs):
        recreate_database()
        out = subprocess.run([sys.executable, __file__, "--drain", broker], cwd=ROOT,
                             env=broker_env(broker), capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"drain on {broker} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def drain_table(brokers, runs: int) -> str:
    rows = ["| broker | Rebound: drained no-ops/s, median [min..max] | … and the broker's leftover "
            "deliveries gone too | runs |", "|---|---|---|---|"]
    for broker in brokers:
        results = drain_runs(broker, runs)
        rates = sorted(r["tasks_per_s"] for r in results)
        empty = sorted(r["broker_empty_per_s"] for r in results)
        name = "ORM / PostgreSQL" if broker == "orm" else "Redis"
        rows.append(f"| {name} | {statistics.median(rates):.0f}/s [{rates[0]:.0f}..{rates[-1]:.0f}] "
                    f"| {statistics.median(empty):.0f}/s [{empty[0]:.0f}..{empty[-1]:.0f}] "
                    f"| {runs} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--n", type=int, default=50, help="retries measured (throughput: 10×n)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--drain", help=argparse.SUPPRESS)
    parser.add_argument("--drain-only", action="store_true",
                        help="only the drain measure (the peers' measure a), --runs times")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.n)))
        return
    if args.drain:
        print(json.dumps(drain(args.drain)))
        return
    if args.drain_only:
        print(drain_table(args.brokers.split(","), args.runs))
        return
    results = {}
    for broker in args.brokers.split(","):
        recreate_database()
        out = subprocess.run([sys.executable, __file__, "--one", broker, "--n", str(args.n)],
                             cwd=ROOT, env=broker_env(broker), capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{broker} run failed:\n{out.stderr[-3000:]}")
        results[broker] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; 2 workers per cluster")
    print(table(results))


if __name__ == "__main__":
    main()

"""Sustained throughput: the rate a queue keeps up with, not how fast it drains a burst.

    .venv/bin/pip install -r bench/requirements.txt     # once: the peers (Procrastinate, Celery)
    .venv/bin/python bench/sustained_bench.py           # Rebound (ORM broker on PostgreSQL, and
                                                        # Redis), Procrastinate, Celery
    .venv/bin/python bench/sustained_bench.py --systems rebound-orm --steps 100,200 --seconds 10

Each system gets 2 worker slots on this machine and the same offered load: no-op tasks
submitted at a steady rate (--steps, per second) for --seconds each, each due at its own time
and sent by one of --producers threads (4), as requests of a web app would: one thread waiting
on each submit in turn would offer no more than one over its submit's latency, and measure
that latency rather than what the queue keeps up with. Per step: the rate actually offered,
the backlog (submitted, not started) when the step ends, and submit → start p50/p95. A step
is *sustained* when ≥ 95 % of the rate was offered, the backlog at its end is under one second
of that rate, and p95 is under 1 s; between steps the backlog drains. The peers run from
`../shared/peer-bench/` (its task modules and worker commands; its databases and role are
created here if missing).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_BENCH = (ROOT.parent / "shared" / "peer-bench").resolve()
sys.path.insert(0, str(ROOT))
from bench.engine_bench import broker_env, recreate_database  # noqa: E402


def steps_of(args) -> list[int]:
    return [int(s) for s in args.steps.split(",")]


def pace(rate: int, seconds: float, submit, producers: int) -> tuple[dict, float]:
    """Call submit(i) at `rate` per second for `seconds`, from `producers` threads (i is due
    at start + i / rate, taken by thread i mod producers): an open load, which one producer
    waiting on each slow submit would lower. Returns {i: submit time} and the rate offered."""
    count = int(rate * seconds)
    sent, started = {}, time.time()

    def produce(first):
        for i in range(first, count, producers):
            delay = started + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.time()
            submit(i)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, count / (time.time() - started)


def verdict(rate, offered, backlog, p95) -> bool:
    return offered >= 0.95 * rate and backlog < rate and p95 is not None and p95 < 1.0


def quantile(values, q):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * q
    low = int(k)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (k - low)


def wait(predicate, timeout, interval=0.05) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- Rebound ---------------------------------------------------------------------------------

def rebound(broker: str, args) -> list[dict]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from operations.models import Attempt, Operation, Status
    from operations.services import submit

    call_command("migrate", verbosity=0)
    if broker == "redis":
        import redis

        redis.from_url(broker_env("redis")["REDIS_URL"]).flushdb()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    procs = [subprocess.Popen([sys.executable, "manage.py", cmd], cwd=ROOT,
                              env=broker_env(broker), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for cmd in ("qcluster", "dispatcher")]
    pending = Operation.objects.exclude(status=Status.COMPLETED)
    try:
        warm = [submit("diagnostics.noop", user, {}) for _ in range(20)]
        assert wait(lambda: not pending.exists(), 90), "the workers did not start"
        del warm
        results = []
        for rate in steps_of(args):
            ids: dict = {}

            def one(i):
                ids[i] = submit("diagnostics.noop", user, {}).pk

            sent, offered = pace(rate, args.seconds, one, args.producers)
            step_ids = list(ids.values())
            backlog = Operation.objects.filter(pk__in=step_ids, started_at__isnull=True).count()
            wait(lambda: not pending.exists(), 120, 0.2)
            starts = dict(Attempt.objects.filter(operation_id__in=step_ids, number=1)
                          .values_list("operation_id", "started_at"))
            latency = [starts[pk].timestamp() - sent[i] for i, pk in ids.items() if pk in starts]
            results.append(step(rate, offered, backlog, latency, len(step_ids)))
        return results
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def step(rate, offered, backlog, latency, count) -> dict:
    p95 = quantile(latency, 0.95) if len(latency) == count else None
    return {"rate": rate, "offered": offered, "backlog": backlog,
            "p50": quantile(latency, 0.5), "p95": p95, "started": len(latency), "count": count,
            "sustained": verdict(rate, offered, backlog, p95)}


# --- peers (their own harness: task modules, worker commands, purge) ------------------------

def prepare_peer_databases():
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = 'perf'").fetchone():
            db.execute("CREATE ROLE perf LOGIN SUPERUSER PASSWORD 'perf'")
        for name in ("perf_proc", "perf_raw"):
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                db.execute(f"CREATE DATABASE {name} OWNER perf")


def peer(name: str, args) -> list[dict]:
    import importlib.util

    sys.path.insert(0, str(PEER_BENCH))  # its task modules and perfcommon
    spec = importlib.util.spec_from_file_location("peer_harness", PEER_BENCH / "bench.py")
    harness = importlib.util.module_from_spec(spec)  # ../shared/peer-bench/bench.py
    spec.loader.exec_module(harness)
    import perfcommon

    harness.VBIN = str(Path(sys.executable).parent)  # the peers are installed beside us
    prepare_peer_databases()
    system = harness.PEERS[name]()
    system.cfg = "default"
    for key, value in system.env("default", "a").items():
        os.environ[key] = value
    system.setup()
    system.purge()
    rundir = tempfile.mkdtemp(prefix=f"sustained-{name}-")
    workers = harness.start_workers(system, "default", "a", rundir)  # warmed up
    try:
        results = []
        for n, rate in enumerate(steps_of(args)):
            path = f"{rundir}/step{n}.stamps"
            sent, offered = pace(rate, args.seconds,
                                 lambda i: system.enqueue("noop", path, str(i), "default"),
                                 args.producers)
            count = len(sent)
            started_by_end = {x[1] for x in perfcommon.read_stamps(path) if x[0] == "start"}
            backlog = count - len(started_by_end)
            stamps = harness.wait_for(path, lambda s: len(s) >= count, 120, poll=0.2)
            latency = [t - sent[int(key)] for kind, key, t, _ in stamps if kind == "start"]
            results.append(step(rate, offered, backlog, latency, count))
        return results
    finally:
        workers.stop()
        if hasattr(system, "close"):
            system.close()


# --- driver ----------------------------------------------------------------------------------

def run_one(system: str, args) -> list[dict]:
    if system.startswith("rebound"):
        recreate_database()
        env = {**broker_env(system.split("-")[1]), "DJANGO_SETTINGS_MODULE": "config.settings"}
    else:
        env = dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--one", system, "--steps", args.steps,
                          "--seconds", str(args.seconds),
                          "--producers", str(args.producers)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


NAMES = {"rebound-orm": "Rebound, ORM broker on PostgreSQL", "rebound-redis": "Rebound, Redis",
         "procrastinate": "Procrastinate (PostgreSQL)", "celery": "Celery (Redis)"}


def table(results: dict) -> str:
    rows = ["| system | offered/s | offered (achieved) | backlog at step end | submit → start p50 / p95 "
            "| sustained |", "|---|---|---|---|---|---|"]
    for system, steps in results.items():
        for s in steps:
            p50 = f"{s['p50'] * 1000:.0f} ms" if s["p50"] is not None else "–"
            p95 = f"{s['p95'] * 1000:.0f} ms" if s["p95"] is not None else \
                f"– ({s['started']}/{s['count']} started)"
            rows.append(f"| {NAMES[system]} | {s['rate']} | {s['offered']:.0f}/s | {s['backlog']} "
                        f"| {p50} / {p95} | {'yes' if s['sustained'] else 'no'} |")
    rows += ["", "| system | highest sustained rate |", "|---|---|"]
    for system, steps in results.items():
        best = max((s["rate"] for s in steps if s["sustained"]), default=None)
        rows.append(f"| {NAMES[system]} | {f'{best}/s' if best else 'none of the steps'} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="rebound-orm,procrastinate,rebound-redis,celery")
    parser.add_argument("--steps", default="100,200,400,600,800")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.one.startswith("rebound"):
            result = rebound(args.one.split("-")[1], args)
        else:
            result = peer(args.one, args)
        print(json.dumps(result))
        return
    results = {}
    for system in args.systems.split(","):
        results[system] = run_one(system, args)
        print(f"measured {system}", file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()

"""Where a producer's `submit()` spends its time, alone and beside busy workers.

    .venv/bin/python bench/submit_probe.py                 # Redis broker, 800/s for 15 s
    .venv/bin/python bench/submit_probe.py --broker orm --rate 400 --seconds 10

One producer thread submits no-op operations at a steady rate (as `sustained_bench.py` does)
into a fresh database, first with no workers running, then beside a 2-process cluster and the
dispatcher. Each submit is timed whole and in parts: its database time (every statement on
the producer's connection: the INSERT with its commit, and on the ORM broker the count of
untaken messages too), the count of woken workers (`delivery.room`, broker round trip
included), and how many broker messages were sent. CPU is read per process from /proc (exited workers count
in their parent)."""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine_bench import broker_env, recreate_database  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict:
    """pid -> (name, CPU seconds including its waited-for children)."""
    seen = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = ("postgres" if "postgres" in cmd else "qcluster" if "qcluster" in cmd
                else "dispatcher" if "dispatcher" in cmd else "redis" if "redis-server" in cmd
                else "producer" if pid == str(os.getpid()) else None)
        if name:
            seen[pid] = (name, sum(int(f) for f in fields[11:15]) / HZ)
    return seen


def cpu_share(before: dict, after: dict, seconds: float) -> Counter:
    share = Counter()
    for pid, (name, spent) in after.items():
        share[name] += (spent - before.get(pid, (name, 0.0))[1]) / seconds
    return share


class Timed:
    """Times the producer's statements, its broker counts and its messages."""

    def __init__(self):
        from django.db import connection

        from operations import delivery, prepared

        self.sql, self.counts, self.messages = [], [], 0
        self.delivery, self.room, self.send = delivery, delivery.room, delivery.async_task
        connection.execute_wrappers.append(self._statement)  # Django's own statements
        self.fetchone, prepared.fetchone = prepared.fetchone, self._prepared  # prepared ones
        delivery.room = self._room
        delivery.async_task = self._send

    def reset(self):
        self.sql, self.counts, self.messages = [], [], 0

    def _statement(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql.append(time.perf_counter() - started)

    def _prepared(self, sql, params):
        started = time.perf_counter()
        try:
            return self.fetchone(sql, params)
        finally:
            self.sql.append(time.perf_counter() - started)

    def _room(self, broker):
        started = time.perf_counter()
        try:
            return self.room(broker)
        finally:
            self.counts.append(time.perf_counter() - started)

    def _send(self, *args, **kwargs):
        self.messages += 1
        return self.send(*args, **kwargs)


def produce(rate: float, seconds: float, user, timed: Timed) -> dict:
    from operations.services import submit

    timed.reset()
    count, walls = int(rate * seconds), []
    cpu_before, started = time.process_time(), time.time()
    for i in range(count):
        delay = started + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        t = time.perf_counter()
        submit("diagnostics.noop", user, {})
        walls.append(time.perf_counter() - t)
    elapsed = time.time() - started
    ms = lambda values: 1000 * statistics.fmean(values) if values else 0.0  # noqa: E731
    return {"achieved": count / elapsed, "elapsed": elapsed, "count": count,
            "p50": 1000 * statistics.median(walls),
            "p95": 1000 * statistics.quantiles(walls, n=20)[-1], "mean": ms(walls),
            "insert": 1000 * sum(timed.sql) / count, "room": ms(timed.counts), "messages": timed.messages,
            "cpu": 1000 * (time.process_time() - cpu_before) / count}


def main(args) -> None:
    os.environ.update(broker_env(args.broker))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from operations.models import Operation, Status

    call_command("migrate", verbosity=0)
    if args.broker == "redis":
        import redis

        redis.from_url(os.environ["REDIS_URL"]).flushdb()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    timed = Timed()
    alone = produce(min(args.rate, 200), 5, user, timed)
    Operation.objects.all().delete()
    procs = [subprocess.Popen([sys.executable, "manage.py", command], cwd=ROOT,
                              env=broker_env(args.broker), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for command in ("qcluster", "dispatcher")]
    pending = Operation.objects.exclude(status=Status.COMPLETED)
    try:
        produce(20, 1, user, timed)
        deadline = time.time() + 90
        while pending.exists() and time.time() < deadline:
            time.sleep(0.1)
        before = cpu_by_process()
        busy = produce(args.rate, args.seconds, user, timed)
        share = cpu_share(before, cpu_by_process(), busy["elapsed"])
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"broker {args.broker}; {args.rate:.0f}/s offered for {args.seconds:.0f} s beside "
          f"the workers (alone: {alone['count']} submits at up to 200/s, no workers)")
    print("| | achieved | submit p50 / p95 / mean | database, per submit | broker count, mean "
          "| producer CPU per submit | messages sent |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("alone", alone), ("beside the workers", busy)):
        print(f"| {name} | {r['achieved']:.0f}/s | {r['p50']:.2f} / {r['p95']:.2f} / "
              f"{r['mean']:.2f} ms | {r['insert']:.2f} ms | {r['room']:.2f} ms | "
              f"{r['cpu']:.2f} ms | {r['messages']} of {r['count']} |")
    print()
    print("| process | CPU (cores) beside the workers | per operation |")
    print("|---|---|---|")
    for name, cores in share.most_common():
        print(f"| {name} | {cores:.2f} | {1000 * cores / busy['achieved']:.2f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "orm"], default="redis")
    parser.add_argument("--rate", type=float, default=800)
    parser.add_argument("--seconds", type=float, default=15)
    recreate_database()
    main(parser.parse_args())

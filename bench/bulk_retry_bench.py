"""Bulk retry benchmark: how long `retry_failed` takes to create the children of many failed
operations (beside the same retries made one by one with `retry_operation`), and the rate at
which a real cluster then starts them (beside the configured REBOUND_BULK_RETRY_RATE).

    .venv/bin/python bench/bulk_retry_bench.py                # 1,000 at 50/s, 100 at 5/s
    .venv/bin/python bench/bulk_retry_bench.py --runs 1000:50

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated); the ORM
broker; a 2-worker cluster and the dispatcher in their own processes. Prints one markdown table.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.engine_bench import PG, ROOT, recreate_database, wait  # noqa: E402


def env(rate: float) -> dict:
    return {**os.environ, "DATABASE_URL": PG, "REDIS_URL": "", "REBOUND_WORKERS": "2",
            "REBOUND_BULK_RETRY_RATE": str(rate), "DJANGO_SETTINGS_MODULE": "config.settings",
            "REBOUND_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}


def failed_operations(user, count: int) -> list:
    """`count` failed flaky operations that succeed when retried."""
    from django.utils import timezone

    from operations.models import Operation, Status

    rows = [Operation(kind="diagnostics.flaky", owner=user, triggered_by=user,
                      status=Status.FAILED, attempt_count=1, error_code="ai_unavailable",
                      error_message="AI service unavailable.", finished_at=timezone.now(),
                      input={"succeed_on_retry": 1}) for _ in range(count)]
    return Operation.objects.bulk_create(rows)


def measure(count: int, rate: float) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from operations.models import Attempt, Channel, Operation, Status
    from operations.services import retry_failed, retry_operation

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    # The baseline: the same number of retries, one call each, not staggered (nothing runs
    # them: no cluster is up yet, and they are removed before the bulk run starts).
    one_by_one = failed_operations(user, count)
    started = time.perf_counter()
    for operation in one_by_one:
        retry_operation(operation.pk, by=user, channel=Channel.API)
    singles_seconds = time.perf_counter() - started
    Operation.objects.filter(parent__isnull=False).delete()
    Operation.objects.all().delete()

    failed = failed_operations(user, count)
    procs = [subprocess.Popen([sys.executable, "manage.py", cmd], cwd=ROOT, env=env(rate),
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd in ("qcluster", "dispatcher")]
    try:
        time.sleep(3)  # the cluster is up before the children become due
        started = time.perf_counter()
        report = retry_failed(Operation.objects.filter(pk__in=[o.pk for o in failed])
                              .order_by("created_at"), by=user, channel=Channel.API)
        bulk_seconds = time.perf_counter() - started
        children = report["retried"]
        wait(lambda: Operation.objects.filter(pk__in=children, status=Status.COMPLETED).count()
             == len(children), timeout=count / rate + 120, interval=0.5)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    starts = sorted(Attempt.objects.filter(operation__in=children).values_list("started_at",
                                                                              flat=True))
    span = (starts[-1] - starts[0]).total_seconds()
    busiest = max(sum(1 for s in starts if 0 <= (s - first).total_seconds() < 1.0)
                  for first in starts)
    return {"count": count, "rate": rate, "bulk_seconds": bulk_seconds,
            "singles_seconds": singles_seconds, "retried": len(children),
            "measured_rate": (len(starts) - 1) / span if span else None,
            "busiest_second": busiest}


def table(results: list[dict]) -> str:
    rows = ["| failed operations | configured rate | create children (bulk) | same retries one by one "
            "| measured start rate | most starts in any 1 s | target | met |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ok = r["measured_rate"] <= r["rate"] * 1.05
        rows.append(f"| {r['count']:,} | {r['rate']:g}/s | {r['bulk_seconds']:.2f} s "
                    f"| {r['singles_seconds']:.2f} s | {r['measured_rate']:.2f}/s "
                    f"| {r['busiest_second']} | start rate ≤ configured | {'yes' if ok else 'no'} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1000:50,100:5",
                        help="count:rate pairs, comma-separated")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        count, rate = args.one.split(":")
        print(json.dumps(measure(int(count), float(rate))))
        return
    results = []
    for run in args.runs.split(","):
        recreate_database()
        rate = float(run.split(":")[1])
        out = subprocess.run([sys.executable, __file__, "--one", run], cwd=ROOT, env=env(rate),
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"run {run} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; PostgreSQL, ORM broker, "
          "2 workers")
    print(table(results))


if __name__ == "__main__":
    main()

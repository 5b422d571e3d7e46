"""Outage drill: an OpenAI-compatible provider (the local inference service) answers 503 in one
region for 90 s while 2 × 40 + 20 questions are asked there and 5 in another region; then it
heals by itself. Run twice on the same drill: with gates (the default) and with
REBOUND_GATES=false (each failure retried on its own, as before gates).

    .venv/bin/python bench/outage_bench.py [--db postgres|sqlite] [--outage 90] [--workers 2]

Goals with gates: 0 cells failed for good and 0 manual retries; at most 30 calls reach the down
region during the outage (probes only); every cell done within 60 s of recovery; the healthy
region's job done within 30 s. PostgreSQL: database `rebound_bench` is dropped and recreated.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ai_bench import free_port  # noqa: E402
from bench.engine_bench import ROOT, broker_env, recreate_database, wait  # noqa: E402

DOWN, HEALTHY = "eu-west", "us-east"


def drill(outage: float) -> dict:
    """In its own process: the stack, the jobs, and what happened to them."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from executions.grid import cells_of, progress_of
    from executions.services import create_job
    from operations.models import Attempt, Operation

    call_command("migrate", verbosity=0)
    port = os.environ["INFERENCE_PORT"]
    faults = [{"region": DOWN, "error_rate": 1.0, "statuses": [503], "for_seconds": outage}]
    procs = [subprocess.Popen([sys.executable, "manage.py", *argv], cwd=ROOT, env=os.environ,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for argv in (["inference_service", "--port", port, "--faults", json.dumps(faults)],
                          ["qcluster"], ["dispatcher"])]
    try:
        wait(lambda: _healthy(port), timeout=30, interval=0.05)
        healed_at = time.time() + outage  # the service's faults lapse `outage` s after it starts
        user = get_user_model().objects.create(username="drill")
        started = time.time()
        jobs = [create_job(user, title=f"down {n}", model="m", regions=[DOWN],
                           questions=[f"Question {i} of job {n}?" for i in range(size)])
                for n, size in enumerate((40, 40, 20))]
        healthy = create_job(user, title="healthy", model="m", regions=[HEALTHY],
                             questions=[f"Healthy question {i}?" for i in range(5)])
        wait(lambda: progress_of(cells_of(healthy)).done == 5, timeout=600, interval=0.2)
        healthy_done = time.time() - started
        wait(lambda: all(not progress_of(cells_of(job)).busy for job in jobs),
             timeout=outage + 600, interval=0.2)
        all_done = time.time()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    cells = [cell for job in jobs for cell in cells_of(job)]
    from datetime import datetime, timezone

    healed = datetime.fromtimestamp(healed_at, tz=timezone.utc)
    return {
        "cells": len(cells),
        "completed": sum(cell.status == "completed" for cell in cells),
        "failed": sum(cell.status in ("failed", "timeout", "error") for cell in cells),
        "manual_retries": Operation.objects.filter(is_retry=True).count(),
        "calls_during": Attempt.objects.filter(dependency=f"inference:{DOWN}",
                                               started_at__lt=healed).count(),
        "done_after_recovery": all_done - healed_at,
        "healthy_done": healthy_done,
    }


def _healthy(port) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=0.5).ok
    except requests.ConnectionError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--outage", type=float, default=90.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(drill(args.outage)))
        return
    results = []
    for label, gates in (("before gates (REBOUND_GATES=false)", "false"), ("with gates", "true")):
        port = free_port()
        env = {**broker_env("orm"), "REBOUND_WORKERS": str(args.workers),
               "INFERENCE_PORT": str(port), "REBOUND_GATES": gates,
               "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{port}/v1",
               "REBOUND_INFERENCE_KEY": "local-dev-key"}
        if args.db == "sqlite":
            env["DATABASE_URL"] = ""
            env["REBOUND_VAR_DIR"] = tempfile.mkdtemp(prefix="rebound-drill-")
        else:
            recreate_database()
        out = subprocess.run([sys.executable, __file__, "--one", "--outage", str(args.outage)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{label} failed:\n{out.stderr[-3000:]}")
        results.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; {args.db}, ORM broker; "
          f"{args.workers} workers; {DOWN} answers 503 for {args.outage:.0f} s")
    print("| run | cells in the down region | completed | failed for good | manual retries "
          "| calls to the down region during the outage | all done after recovery "
          "| healthy region's job done |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results:
        print(f"| {label} | {r['cells']} | {r['completed']} | {r['failed']} | "
              f"{r['manual_retries']} | {r['calls_during']} | {r['done_after_recovery']:.1f} s | "
              f"{r['healthy_done']:.1f} s |")
    print("| goal (with gates) | | all | 0 | 0 | ≤ 30 | ≤ 60 s | ≤ 30 s |")


if __name__ == "__main__":
    main()

"""Executions benchmark: a job of 3 regions × 200 questions run by a real cluster against the
local inference service, with 10 % of calls answered 503 and with none (the baseline, same
run); then the grid endpoint (`GET /api/v1/jobs/{id}/executions/all`) timed at 600 cells and
at 60, with its query count.

    .venv/bin/python bench/executions_bench.py [--questions 200] [--workers 2]

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ai_bench import free_port, running_stack  # noqa: E402
from bench.engine_bench import ROOT, broker_env, recreate_database, wait  # noqa: E402

REGIONS = ["us-east", "eu-west", "asia-pacific"]


def run_job(questions: int, error_rate: float) -> dict:

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from executions.grid import cells_of, progress_of
    from executions.services import create_job
    from operations.models import TERMINAL, Attempt, Operation

    call_command("migrate", verbosity=0)
    with running_stack(error_rate):
        user = get_user_model().objects.create(username="bench")
        started = time.time()
        job = create_job(user, title="bench", model="rebound-local-1", regions=REGIONS,
                         questions=[f"Question {i}: why do retries need jitter?"
                                    for i in range(questions)])
        wait(lambda: progress_of(cells_of(job)).done == len(REGIONS) * questions,
             timeout=1800, interval=0.5)
        elapsed = time.time() - started
    progress = progress_of(cells_of(job))
    return {"cells": progress.total, "elapsed": elapsed, "counts": progress.counts,
            "attempts": Attempt.objects.count(),
            "all_terminal": not Operation.objects.exclude(status__in=TERMINAL).exists()}


def time_grid(questions_list) -> list[dict]:
    """In-process: create jobs of each size (cells finished), then time the grid endpoint."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from rest_framework.test import APIClient

    from executions.services import create_job
    from operations.models import Operation

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="grid")
    client = APIClient()
    client.force_authenticate(user)
    rows = []
    for questions in questions_list:
        cells = len(REGIONS) * questions
        job = create_job(user, title="grid", model="m", regions=REGIONS,
                         questions=[f"Q{i}" for i in range(questions)], slots=cells)
        Operation.objects.filter(input__job_id=job.pk).update(
            status="completed", attempt_count=1, result={"answer": "x" * 200},
            finished_at=timezone.now())
        url = f"/api/v1/jobs/{job.pk}/executions/all"
        client.get(url)  # warm
        timings = []
        for _ in range(30):
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200 and len(response.json()) == cells
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        timings.sort()
        rows.append({"cells": cells, "median": statistics.median(timings),
                     "p95": timings[int(0.95 * (len(timings) - 1))],
                     "queries": len(queries)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--grid", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grid:
        print(json.dumps(time_grid([20, args.questions])))
        return
    if args.one is not None:
        print(json.dumps(run_job(args.questions, args.one)))
        return
    port = free_port()
    env = {**broker_env("orm"), "REBOUND_WORKERS": str(args.workers), "INFERENCE_PORT": str(port),
           "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{port}/v1", "REBOUND_INFERENCE_KEY": "local-dev-key"}
    runs = []
    for label, rate in (("no faults (baseline)", 0.0), ("10 % 503", 0.1)):
        recreate_database()
        out = subprocess.run([sys.executable, __file__, "--one", str(rate), "--questions",
                              str(args.questions)], cwd=ROOT, env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            sys.exit(f"{label} run failed:\n{out.stderr[-3000:]}")
        runs.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    recreate_database()
    out = subprocess.run([sys.executable, __file__, "--grid", "--questions", str(args.questions)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"grid timing failed:\n{out.stderr[-3000:]}")
    grids = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"machine: {__import__('os').cpu_count()} cores; {time.strftime('%Y-%m-%d')}; ORM "
          f"broker on PostgreSQL; {args.workers} workers; REBOUND_JOB_CONCURRENCY 4")
    print("| job | cells | completed | failed / timeout / error | attempts | time to finish "
          "| cells/s | all terminal |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in runs:
        c = r["counts"]
        print(f"| {label} | {r['cells']} | {c['completed']} | {c['failed']} / {c['timeout']} / "
              f"{c['error']} | {r['attempts']} | {r['elapsed']:.1f} s | "
              f"{r['cells'] / r['elapsed']:.1f} | {'yes' if r['all_terminal'] else 'NO'} |")
    print()
    print("| grid endpoint | cells | median | p95 | queries | target | met |")
    print("|---|---|---|---|---|---|---|")
    for g in grids:
        ok = g["median"] < 0.1
        print(f"| GET /api/v1/jobs/{{id}}/executions/all | {g['cells']} | "
              f"{g['median'] * 1000:.1f} ms | {g['p95'] * 1000:.1f} ms | {g['queries']} | "
              f"< 100 ms, same queries at any size | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()

"""Batch pipeline benchmark: 200 essays through every phase (spellcheck, nlp, ai_feedback, then
the batch-only cj_assessment) by a real cluster against the local inference service, with 10 %
of AI calls answered 503 and with none (the baseline, same run).

    .venv/bin/python bench/batches_bench.py [--essays 200] [--workers 2]

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated).
Reports wall time, operations per second, and the time from the last essay's ai_feedback
completion to the start of cj_assessment (the continuation; goal: under 1 s).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ai_bench import free_port, running_stack  # noqa: E402
from bench.engine_bench import ROOT, broker_env, recreate_database, wait  # noqa: E402


def run(essays: int, error_rate: float) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db.models import Max, Min

    from batches.models import PhaseOutput
    from batches.pipeline import request_pipeline
    from batches.services import create_batch
    from operations.models import TERMINAL, Attempt, Operation
    from tests.batches_helpers import essay

    call_command("migrate", verbosity=0)
    with running_stack(error_rate):
        user = get_user_model().objects.create(username="bench")
        batch = create_batch(user, title="bench", essays=[essay(i, 120) for i in range(essays)],
                             region="eu-west")
        started = time.time()
        request_pipeline(batch, "cj_assessment")
        cj = Operation.objects.filter(kind="batches.cj_assessment")
        wait(lambda: cj.filter(status__in=TERMINAL).exists() or (
            not Operation.objects.exclude(status__in=TERMINAL).exists()
            and Operation.objects.filter(kind="batches.ai_feedback", status="failed").exists()),
            timeout=1800, interval=0.5)
        elapsed = time.time() - started
    last_feedback = Operation.objects.filter(kind="batches.ai_feedback",
                                             status="completed").aggregate(t=Max("finished_at"))["t"]
    cj_start = Attempt.objects.filter(operation__kind="batches.cj_assessment").aggregate(
        t=Min("started_at"))["t"]
    cj_created = cj.aggregate(t=Min("created_at"))["t"]
    return {"essays": essays, "elapsed": elapsed, "operations": Operation.objects.count(),
            "attempts": Attempt.objects.count(),
            "failed": Operation.objects.filter(status="failed").count(),
            "outputs": PhaseOutput.objects.count(),
            "cj_status": cj.first().status if cj.exists() else "not started",
            "gap_to_cj_created": (cj_created - last_feedback).total_seconds() if cj_created else None,
            "gap_to_cj_started": (cj_start - last_feedback).total_seconds() if cj_start else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--essays", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run(args.essays, args.one)))
        return
    port = free_port()
    env = {**broker_env("orm"), "REBOUND_WORKERS": str(args.workers),
           "INFERENCE_PORT": str(port), "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{port}/v1",
           "REBOUND_INFERENCE_KEY": "local-dev-key"}
    rows = []
    for label, rate in (("no faults (baseline)", 0.0), ("10 % 503 on AI calls", 0.1)):
        recreate_database()
        out = subprocess.run([sys.executable, __file__, "--one", str(rate), "--essays",
                              str(args.essays)], cwd=ROOT, env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            sys.exit(f"{label} run failed:\n{out.stderr[-3000:]}")
        rows.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; ORM broker on "
          f"PostgreSQL; {args.workers} workers; essays of 120 words")
    print("| run | essays | operations | attempts | failed for good | outputs | wall time "
          "| operations/s | last ai_feedback → cj_assessment created / started | target | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        gap = r["gap_to_cj_started"]
        ok = gap is not None and gap < 1.0
        print(f"| {label} | {r['essays']} | {r['operations']} | {r['attempts']} | {r['failed']} "
              f"| {r['outputs']} | {r['elapsed']:.1f} s | {r['operations'] / r['elapsed']:.1f} "
              f"| {r['gap_to_cj_created'] * 1000:.0f} ms / {gap * 1000:.0f} ms | < 1 s | "
              f"{'yes' if ok else 'no'} |" if gap is not None else
              f"| {label} | {r['essays']} | {r['operations']} | {r['attempts']} | {r['failed']} "
              f"| {r['outputs']} | {r['elapsed']:.1f} s | – | cj_assessment {r['cj_status']} "
              f"| < 1 s | no |")


if __name__ == "__main__":
    main()

"""AI operations under faults: 500 interview questions through several workers against the local
inference service, once with 30 % of calls answered 503 and once with none.

    .venv/bin/python bench/ai_bench.py [--n 500] [--workers 4]

Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_bench` is dropped and recreated).
Prints one markdown table: outcomes, attempts per operation, end-to-end time, invariants.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.engine_bench import ROOT, broker_env, recreate_database, wait  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_stack(error_rate: float):
    """A cluster, the dispatcher and the local inference service answering `error_rate` of calls
    503, each in its own process group; all are SIGKILLed when the block ends."""
    faults = [{"region": "*", "error_rate": error_rate, "statuses": [503]}] if error_rate else []
    procs = [subprocess.Popen([sys.executable, "manage.py", *argv], cwd=ROOT, env={**os.environ},
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for argv in (["qcluster"], ["dispatcher"],
                          ["inference_service", "--port", os.environ["INFERENCE_PORT"], "--faults",
                           json.dumps(faults)])]
    try:
        time.sleep(3)  # the cluster is up before work is created
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(n: int, error_rate: float) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from interviews.services import start_session
    from operations.models import TERMINAL, Attempt, Operation

    with running_stack(error_rate):
        user = get_user_model().objects.create(username="bench")
        started = time.time()
        for i in range(n):
            start_session(user, f"topic {i % 25}")
        wait(lambda: Operation.objects.exclude(status__in=TERMINAL).count() == 0, timeout=900,
             interval=0.25)
        elapsed = time.time() - started
    per_op = Counter(Operation.objects.values_list("attempt_count", flat=True))
    numbers = {}
    for op_id, number in Attempt.objects.values_list("operation_id", "number"):
        numbers.setdefault(op_id, []).append(number)
    contiguous = all(sorted(v) == list(range(1, len(v) + 1)) for v in numbers.values())
    return {
        "n": n, "elapsed": elapsed,
        "statuses": dict(Counter(Operation.objects.values_list("status", flat=True))),
        "attempts_histogram": {str(k): v for k, v in sorted(per_op.items())},
        "attempts_total": Attempt.objects.count(),
        "open_attempts": Attempt.objects.filter(outcome__isnull=True).count(),
        "contiguous": contiguous,
        "questions_written": Operation.objects.filter(status="completed").count(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.n, args.one)))
        return
    port = free_port()
    rows = ["| run | ops | completed | failed | attempts / op (1 / 2 / 3 / 4) | mean attempts | "
            "end-to-end | ops/s | all terminal | no open attempt | numbers contiguous |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rate in (("no faults", 0.0), ("30 % 503", 0.3)):
        recreate_database()
        env = {**broker_env("orm"), "REBOUND_WORKERS": str(args.workers),
               "INFERENCE_PORT": str(port),
               "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{port}/v1"}
        out = subprocess.run([sys.executable, __file__, "--one", str(rate), "--n", str(args.n)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{label} run failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        hist = r["attempts_histogram"]
        done = r["statuses"].get("completed", 0)
        terminal = sum(r["statuses"].get(s, 0) for s in ("completed", "failed", "cancelled"))
        rows.append(
            f"| {label} | {r['n']} | {done} | {r['statuses'].get('failed', 0)} | "
            f"{hist.get('1', 0)} / {hist.get('2', 0)} / {hist.get('3', 0)} / {hist.get('4', 0)} | "
            f"{r['attempts_total'] / r['n']:.2f} | {r['elapsed']:.1f} s | "
            f"{r['n'] / r['elapsed']:.1f} | {'yes' if terminal == r['n'] else 'NO'} | "
            f"{'yes' if r['open_attempts'] == 0 else 'NO'} | {'yes' if r['contiguous'] else 'NO'} |")
    print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; ORM broker on "
          f"PostgreSQL; {args.workers} workers; AI policy: 4 attempts, backoff 1 s, 2 s, 4 s "
          "+ jitter")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Web under load: locust users (bench/locustfile.py) against gunicorn, with the workers, the
dispatcher and the inference service running behind it, at rising user counts.

    .venv/bin/pip install -r bench/requirements.txt     # locust
    .venv/bin/python bench/web_load.py [--users 10,25,50,100] [--seconds 30]

Each of 50 accounts owns a job of 10 questions in two regions; 30 % of the AI calls in
`load-flaky` are refused (HTTP 400, a permanent failure), so there are always failed cells for
the users to retry. Throttles are raised out of the way (this measures capacity, not them).
Needs PostgreSQL at 127.0.0.1:5432 (database `rebound_load` is dropped and recreated) and Redis
at 127.0.0.1:6379 (database 12 is flushed). Prints one markdown table: per user count, requests
per second, median and p95 latency, and failures (any 4xx/5xx or connection error).
"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "rebound_load"
PG = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS = "redis://127.0.0.1:6379/12"
ACCOUNTS = 50
GUNICORN = {"workers": 3, "threads": 4}
P95_GOAL_MS = 200
SPAWN_RATE = 5  # users starting per second, as people arrive


def prepare(path: Path) -> None:
    """Accounts, each with a job whose cells run (and some fail) before the load starts."""
    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from executions.services import create_job

    call_command("migrate", verbosity=0)
    redis.from_url(REDIS).flushdb()
    accounts = []
    for i in range(ACCOUNTS):
        user = get_user_model().objects.create_user(f"load-{i}")
        job = create_job(user, title=f"Load job {i}", model="rebound-small",
                         regions=["us-east", "load-flaky"],
                         questions=[f"What is question {n} about?" for n in range(10)])
        accounts.append({"username": user.username, "session": signed_in(user), "job": job.pk})
    path.write_text(json.dumps(accounts))


def signed_in(user) -> str:
    """A session key for `user`, as logging in makes (so that the load is not password
    hashing: each login costs a deliberately slow hash)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session.update({SESSION_KEY: str(user.pk), HASH_SESSION_KEY: user.get_session_auth_hash(),
                    BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend"})
    session.create()
    return session.session_key


def locust_binary() -> str:
    found = shutil.which("locust") or str(Path(sys.executable).parent / "locust")
    if not Path(found).exists():
        raise SystemExit("locust is not installed: .venv/bin/pip install -r bench/requirements.txt")
    return found


def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {DATABASE}")


def wait_for(url: str, timeout=60):
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer")


def load_level(users: int, seconds: int, base: str, env: dict, out: Path) -> dict:
    prefix = out / f"u{users}"
    subprocess.run([locust_binary(), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                    "--host", base, "--users", str(users), "--spawn-rate", str(SPAWN_RATE),
                    # Measured from when every user is running: the ramp is not the load.
                    "--reset-stats", "--run-time", f"{seconds + users // SPAWN_RATE + 1}s",
                    "--csv", str(prefix), "--only-summary",
                    "--loglevel", "WARNING"], env=env, cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(f"{prefix}_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    with open(f"{prefix}_failures.csv") as f:
        failures = [f"{row['Name']}: {row['Error']} ({row['Occurrences']}x)"
                    for row in csv.DictReader(f)]
    total = rows["Aggregated"]
    return {"users": users, "rps": float(total["Requests/s"]),
            "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
            "p50": float(total["50%"]), "p95": float(total["95%"]), "failed": failures,
            "by_name": {name: (float(row["95%"]), int(row["Request Count"]))
                        for name, row in rows.items()
                        if name != "Aggregated" and int(row["Request Count"])}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,25,50,100")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    locust_binary()
    from tests.stack import free_port

    recreate_database()
    scratch = Path(tempfile.mkdtemp(prefix="rebound-load-"))
    ai_port, web_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": PG, "REDIS_URL": REDIS, "PYTHONPATH": str(ROOT),
           "DJANGO_SETTINGS_MODULE": "config.settings", "REBOUND_LOG_LEVEL": "WARNING",
           "REBOUND_STORAGE_DIR": str(scratch / "uploads"), "REBOUND_WORKERS": "2",
           "REBOUND_INFERENCE_URL": f"http://127.0.0.1:{ai_port}/v1",
           "REBOUND_INFERENCE_KEY": "load-key",
           "REBOUND_INFERENCE_REGIONS": "us-east,load-flaky",
           "REBOUND_RETRY_THROTTLE": "100000/min", "REBOUND_UPLOAD_THROTTLE": "100000/min",
           "LOAD_ACCOUNTS": str(scratch / "accounts.json"), "DJANGO_DEBUG": "false",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    commands = {
        "inference": [sys.executable, "manage.py", "inference_service", "--port", str(ai_port)],
        "workers": [sys.executable, "manage.py", "qcluster"],
        "dispatcher": [sys.executable, "manage.py", "dispatcher"],
        "web": [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                f"127.0.0.1:{web_port}", "--workers", str(GUNICORN["workers"]),
                "--threads", str(GUNICORN["threads"])],
    }
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT,
                   env=env, check=True)
    processes = []
    try:
        processes.append(subprocess.Popen(commands["inference"], cwd=ROOT, env=env,
                                          start_new_session=True, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        wait_for(f"http://127.0.0.1:{ai_port}/health")
        import requests

        requests.post(f"http://127.0.0.1:{ai_port}/_faults", timeout=5, json={
            "region": "load-flaky", "error_rate": 0.3, "statuses": [400]}).raise_for_status()
        # In its own process: Django (and django-q2's broker) set up with this environment.
        subprocess.run([sys.executable, __file__, "--prepare", env["LOAD_ACCOUNTS"]], cwd=ROOT,
                       env=env, check=True)
        for name in ("workers", "dispatcher", "web"):
            processes.append(subprocess.Popen(commands[name], cwd=ROOT, env=env,
                                              start_new_session=True,
                                              stdout=open(scratch / f"{name}.log", "w"),
                                              stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{web_port}"
        wait_for(f"{base}/healthz")
        load_level(10, 15, base, env, scratch)  # warm-up, not reported: every worker has loaded
        levels = [load_level(int(n), args.seconds, base, env, scratch)
                  for n in args.users.split(",")]
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    print(table(levels, args.seconds))


def table(levels: list[dict], seconds: int) -> str:
    rows = [f"gunicorn {GUNICORN['workers']} workers x {GUNICORN['threads']} threads, a 2-worker "
            f"cluster, the dispatcher and the inference service on the same 2 cores; "
            f"PostgreSQL + Redis; locust on the same machine; users start {SPAWN_RATE} a second, "
            f"then {seconds} s measured per level.", "",
            "| users | requests/s | median | p95 | failures | p95 < 200 ms and 0 failures |",
            "|---|---|---|---|---|---|"]
    for level in levels:
        met = level["p95"] < P95_GOAL_MS and level["failures"] == 0
        rows.append(f"| {level['users']} | {level['rps']:.1f} | {level['p50']:.0f} ms | "
                    f"{level['p95']:.0f} ms | {level['failures']} of {level['requests']} | "
                    f"{'yes' if met else 'no'} |")
    good = [level for level in levels if level["p95"] < P95_GOAL_MS and not level["failures"]]
    if good:
        best = max(good, key=lambda level: level["rps"])
        rows.append(f"\nHighest load within the goal: {best['rps']:.1f} requests/s "
                    f"({best['users']} users).")
    for level in levels:
        rows.append(f"\nAt {level['users']} users, p95 by request: " + "; ".join(
            f"{name} {p95:.0f} ms" for name, (p95, _) in sorted(level["by_name"].items())))
        if level["failed"]:
            rows.append("Failures: " + "; ".join(level["failed"]))
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--prepare":
        prepare(Path(sys.argv[2]))
    else:
        main()

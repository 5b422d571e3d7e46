"""Real processes for tests about workers: a django-q2 cluster on the test database."""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    s = connection.settings_dict
    return (f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:"
            f"{s['PORT'] or 5432}/{s['NAME']}")


def process_env(**overrides) -> dict:
    env = {**os.environ, "DATABASE_URL": test_database_url(), "REBOUND_WORKERS": "1",
           "PYTHONUNBUFFERED": "1",
           # Webhooks: no DNS (address literals only), and nothing beyond loopback.
           "REBOUND_WEBHOOK_HOSTS": "", "REBOUND_WEBHOOK_PUBLIC": "false",
           "REBOUND_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
           **{k: str(v) for k, v in overrides.items()}}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser tests' own; servers keep the check
    return env


@contextmanager
def cluster(tmp_path, name="cluster", **env):
    """A real `manage.py qcluster` in its own process group; killed on exit."""
    with managed(tmp_path, "qcluster", name, **env) as process:
        yield process


@contextmanager
def managed(tmp_path, command: str, name: str = "", **env):
    """A real `manage.py <command>` in its own process group; killed on exit."""
    log = open(tmp_path / f"{name or command}.log", "w")
    process = subprocess.Popen([sys.executable, "manage.py", command], cwd=ROOT,
                               env=process_env(**env), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        yield process
    finally:
        kill_group(process)
        log.close()


def kill_group(process, sig=signal.SIGKILL):
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

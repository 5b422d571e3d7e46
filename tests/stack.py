"""Rebound's whole stack in real processes, for the tests that meet it as users and operators
do: gunicorn, a django-q2 cluster, the dispatcher and the local inference service, on free
loopback ports over the test database (or, for drills, through whatever DATABASE_URL or
REDIS_URL they put in between)."""
import socket
import subprocess
import sys
from contextlib import contextmanager

import requests

from tests.processes import ROOT, kill_group, process_env, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    def __init__(self, url: str, ai: str, log_dir, processes: dict):
        self.url, self.ai, self.log_dir, self.processes = url, ai, log_dir, processes

    def faults(self, **spec):
        requests.post(f"{self.ai}/_faults", json=spec, timeout=5).raise_for_status()

    def clear_faults(self):
        requests.delete(f"{self.ai}/_faults", timeout=5)


@contextmanager
def running_stack(log_dir, storage, **env_overrides):
    """Start every process; yield a Stack; stop them all (also when starting fails)."""
    ai_port, web_port = free_port(), free_port()
    settings = dict(
        REBOUND_WORKERS=2, REBOUND_INFERENCE_URL=f"http://127.0.0.1:{ai_port}/v1",
        REBOUND_INFERENCE_KEY="test-key",
        REBOUND_STORAGE_DIR=storage, REBOUND_CHECKPOINT_SECONDS=0.3,
        REBOUND_RETRY_THROTTLE="20/min", REBOUND_UPLOAD_THROTTLE="3/min",
        REBOUND_LOG_LEVEL="WARNING")
    env = process_env(**{**settings, **env_overrides})
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                   cwd=ROOT, env=env, check=True)
    commands = {
        "inference": [sys.executable, "manage.py", "inference_service", "--port", str(ai_port)],
        "web": [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                f"127.0.0.1:{web_port}", "--workers", "1", "--threads", "8"],
        "workers": [sys.executable, "manage.py", "qcluster"],
        "dispatcher": [sys.executable, "manage.py", "dispatcher"],
    }
    processes = {}
    try:
        for name, argv in commands.items():
            log = open(log_dir / f"{name}.log", "w")
            processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True)
        base, ai = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{ai_port}"

        def up():
            try:
                return (requests.get(f"{base}/healthz", timeout=5).ok
                        and requests.get(f"{ai}/health", timeout=5).ok)
            except requests.RequestException:
                return False

        wait_for(up, 60, interval=0.2, what="the web server and the inference service")
        yield Stack(base, ai, log_dir, processes)
    finally:
        for process in processes.values():
            kill_group(process)

"""A webhook receiver process for tests (tests/webhook_receiver.py) and a resolver that
answers the names tests choose, so no test ever asks a real DNS server."""
import subprocess
import sys
from contextlib import contextmanager

import requests

from tests.processes import ROOT, kill_group, wait_for
from tests.stack import free_port


class Receiver:
    def __init__(self, port: int, process):
        self.port, self.process = port, process
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hook"

    def mode(self, mode: str = "ok", *, secrets=None, clear: bool = False) -> None:
        change = {"mode": mode, "clear": clear}
        if secrets is not None:
            change["secrets"] = list(secrets)
        requests.post(f"{self.base}/_mode", json=change, timeout=5).raise_for_status()

    def seen(self) -> dict:
        return requests.get(f"{self.base}/_seen", timeout=5).json()

    def deliveries(self) -> list[dict]:
        return self.seen()["deliveries"]


@contextmanager
def receiver_process(port: int | None = None, log=None):
    port = port or free_port()
    process = subprocess.Popen([sys.executable, "tests/webhook_receiver.py", "--port", str(port)],
                               cwd=ROOT, stdout=log or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    receiver = Receiver(port, process)

    def up():
        try:
            return requests.get(f"{receiver.base}/_seen", timeout=0.5).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, 20, what="webhook receiver")
        yield receiver
    finally:
        kill_group(process)


class Names:
    """The names tests choose, resolved from REBOUND_WEBHOOK_HOSTS (never DNS): change an
    answer to rebind a name."""

    def __init__(self, settings):
        self.answers: dict[str, str] = {}
        settings.WEBHOOKS = {**settings.WEBHOOKS, "HOSTS": self.answers}

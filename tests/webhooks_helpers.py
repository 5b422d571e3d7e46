"""Webhooks in tests: a receiver process (tests/webhook_receiver.py), names that resolve
from a list (never DNS), an operation that fails for good, and running deliveries here."""
import subprocess
import sys
from contextlib import contextmanager

import requests

from operations import runner
from operations.errors import PermanentError
from operations.kinds import register
from operations.models import Operation, Status
from operations.services import submit
from tests.processes import ROOT, kill_group, wait_for
from tests.stack import free_port


@register("tests.webhooks.fails")
def fails(context):
    """Fails for good on its first run (an operation.failed event); a manual retry succeeds."""
    if context.operation.retry_number == 0:
        raise PermanentError("invalid_input", "told to fail")
    return {}


def fail_one(user) -> Operation:
    """An operation of `user` that failed for good (its follow-ups emitted the event)."""
    operation = submit("tests.webhooks.fails", user, {})
    runner.run(operation.pk)
    operation.refresh_from_db()
    assert operation.status == Status.FAILED
    return operation


def deliver_all() -> list[Operation]:
    """Run every pending delivery once in this process, oldest first."""
    ran = []
    for operation in Operation.objects.filter(kind="webhooks.deliver",
                                              status=Status.PENDING).order_by("created_at"):
        runner.run(operation.pk)
        operation.refresh_from_db()
        ran.append(operation)
    return ran


class Receiver:
    def __init__(self, port: int, process, ca=None):
        self.port, self.process = port, process
        self.base = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.url = f"{self.base}/hook"
        self.verify = str(ca) if ca else True  # the control calls trust its certificate

    def mode(self, mode: str = "ok", *, secrets=None, clear: bool = False) -> None:
        change = {"mode": mode, "clear": clear}
        if secrets is not None:
            change["secrets"] = list(secrets)
        requests.post(f"{self.base}/_mode", json=change, timeout=5,
                      verify=self.verify).raise_for_status()

    def seen(self) -> dict:
        return requests.get(f"{self.base}/_seen", timeout=5, verify=self.verify).json()

    def deliveries(self) -> list[dict]:
        return self.seen()["deliveries"]


@contextmanager
def receiver_process(port: int | None = None, log=None, tls=None):
    """`tls`: (certificate, key) files: it serves https, for the names in the certificate."""
    port = port or free_port()
    process = subprocess.Popen([sys.executable, "tests/webhook_receiver.py", "--port", str(port),
                                *(["--tls", *map(str, tls)] if tls else [])],
                               cwd=ROOT, stdout=log or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    receiver = Receiver(port, process, ca=tls[0] if tls else None)

    def up():
        try:
            return requests.get(f"{receiver.base}/_seen", timeout=0.5,
                                verify=receiver.verify).ok
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

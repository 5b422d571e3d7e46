"""Failure drills on the real stack (PostgreSQL, real processes): the database refuses every
connection for 10 s while operations run; the Redis broker is killed and started again
mid-run. Every operation still ends, none is lost, none runs twice at once."""
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import requests
from django.db import connection

from operations.models import TERMINAL, Attempt, Operation, Status
from operations.services import submit
from tests.processes import ROOT, kill_group, wait_for
from tests.stack import free_port, running_stack

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@contextmanager
def proxy(listen_port: int, host: str, port: int):
    """A TCP forwarder to the service; yields a switch (`down()`, `up()`)."""
    log = open(f"/tmp/rebound-proxy-{listen_port}.log", "w")

    class Switch:
        process = None

        def up(self):
            self.process = subprocess.Popen(
                [sys.executable, "tests/tcp_proxy.py", str(listen_port), host, str(port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wait_for(self._listening, 10, what="the proxy")

        def down(self):
            kill_group(self.process)  # open connections are cut, new ones refused

        @staticmethod
        def _listening():
            import socket

            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", listen_port)) == 0

    switch = Switch()
    switch.up()
    try:
        yield switch
    finally:
        switch.down()
        log.close()


def overlapping_attempts() -> list:
    """Pairs of attempts of one operation that ran at the same time (I2)."""
    overlaps = []
    by_operation = {}
    for attempt in Attempt.objects.order_by("operation_id", "number"):
        by_operation.setdefault(attempt.operation_id, []).append(attempt)
    for attempts in by_operation.values():
        for earlier, later in zip(attempts, attempts[1:]):
            if earlier.finished_at is None or later.started_at < earlier.finished_at:
                overlaps.append((earlier.pk, later.pk))
    return overlaps


def assert_all_done_once(operations):
    ids = [op.pk for op in operations]
    statuses = set(Operation.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == {Status.COMPLETED}, statuses
    assert overlapping_attempts() == []
    for op in Operation.objects.filter(pk__in=ids):
        numbers = list(op.attempts.values_list("number", flat=True))
        assert numbers == list(range(1, len(numbers) + 1)) == list(range(1, op.attempt_count + 1))


def test_the_database_refusing_connections_for_10_s_loses_nothing(user, tmp_path):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user).key
    s = connection.settings_dict
    port = free_port()
    with proxy(port, "127.0.0.1", s["PORT"] or 5432) as database:
        proxied = f"postgres://{s['USER'] or 'postgres'}@127.0.0.1:{port}/{s['NAME']}"
        with running_stack(tmp_path, tmp_path / "uploads", DATABASE_URL=proxied,
                           REBOUND_LEASE_SECONDS=5) as stack:
            operations = [submit("diagnostics.sleep", user, {"seconds": 0.5})
                          for _ in range(30)]
            wait_for(lambda: Operation.objects.filter(status=Status.COMPLETED).count() >= 3, 30,
                     what="some operations to finish")
            database.down()
            refused = time.monotonic()
            ready = requests.get(f"{stack.url}/readyz", headers={"Accept": "application/json"},
                                 timeout=10)
            assert ready.status_code == 503 and "Database" in str(ready.json())
            api = requests.get(f"{stack.url}/api/v1/operations/", timeout=10,
                               headers={"Authorization": f"Token {token}"})
            assert api.status_code == 503 and api.json()["code"] == "service_unavailable"
            time.sleep(max(0.0, 10 - (time.monotonic() - refused)))
            database.up()
            wait_for(lambda: not Operation.objects.filter(pk__in=[o.pk for o in operations])
                     .exclude(status__in=TERMINAL).exists(), 120, interval=0.5,
                     what="every operation to end")
            wait_for(lambda: requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200,
                     30, what="/readyz to recover")
    assert_all_done_once(operations)


@contextmanager
def redis_server(port: int):
    def start():
        process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                        capture_output=True).stdout.strip() == b"PONG", 10,
                 what="redis")
        return process

    class Redis:
        process = start()

        def kill(self):
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

        def restart(self):
            self.process = start()

    redis = Redis()
    try:
        yield redis
    finally:
        redis.kill()


def test_the_redis_broker_killed_and_restarted_mid_run_loses_nothing(user, tmp_path):
    port = free_port()
    with redis_server(port) as redis:
        with running_stack(tmp_path, tmp_path / "uploads",
                           REDIS_URL=f"redis://127.0.0.1:{port}/0",
                           REBOUND_REDELIVER_AFTER=3) as _stack:
            operations = [submit("diagnostics.sleep", user, {"seconds": 0.3})
                          for _ in range(40)]
            wait_for(lambda: Operation.objects.filter(status=Status.COMPLETED).count() >= 5, 30,
                     what="some operations to finish")
            redis.kill()  # the queued deliveries are gone with it
            time.sleep(3)
            redis.restart()
            wait_for(lambda: not Operation.objects.filter(pk__in=[o.pk for o in operations])
                     .exclude(status__in=TERMINAL).exists(), 120, interval=0.5,
                     what="every operation to end")
    assert_all_done_once(operations)

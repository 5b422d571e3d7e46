"""Webhooks under load: events fanned out to several endpoints, one of them down at first.

    .venv/bin/python bench/webhooks_bench.py                      # 10,000 events × 10 endpoints
    .venv/bin/python bench/webhooks_bench.py --events 500 --down-for 20

On PostgreSQL (database `rebound_bench`, dropped and recreated) with a 2-process django-q2
cluster and the dispatcher, as in production. Each endpoint is its own receiver process on
loopback (tests/webhook_receiver.py: it verifies every signature and counts deliveries by
`webhook-id`); the first endpoint's receiver starts only after --down-for seconds. One owner
subscribes every endpoint to `job.finished`, and --events events are emitted (each in its own
transaction, as a workload's continuation would). Measured: every delivery arrived (per
endpoint, each event once), duplicates, attempts spent on the down endpoint during its outage
(the gate's probes), and events and deliveries per second. The baseline, measured in the same
run: the same signed POSTs sent straight from 2 threads with no engine (transport only).
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.ai_bench import free_port  # noqa: E402
from bench.engine_bench import PG, recreate_database  # noqa: E402
from bench.sustained_bench import wait  # noqa: E402

ENV = {"DATABASE_URL": PG, "REDIS_URL": "", "REBOUND_WORKERS": "2", "REBOUND_Q_SAVE_LIMIT": "0",
       "DJANGO_SETTINGS_MODULE": "config.settings", "REBOUND_LOG_LEVEL": "WARNING",
       "REBOUND_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "REBOUND_WEBHOOK_PUBLIC": "false",
       "REBOUND_WEBHOOK_HOSTS": "", "PYTHONPATH": str(ROOT)}


def receiver(port: int, secret: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "tests/webhook_receiver.py", "--port", str(port),
                             "--secret", secret], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def seen(port: int) -> list[dict]:
    import requests

    return requests.get(f"http://127.0.0.1:{port}/_seen", timeout=30).json()["deliveries"]


def baseline(n: int) -> float:
    """Signed POSTs straight to a receiver from 2 threads: deliveries per second."""
    from webhooks import services, transport

    port, secret = free_port(), services.new_secret()
    process = receiver(port, secret)
    try:
        import requests

        wait(lambda: _up(requests, port), 20)
        url, payload = f"http://127.0.0.1:{port}/hook", {"type": "job.finished", "data": {}}

        def send(count):
            for i in range(count):
                transport.post(url, [secret], f"evt_baseline_{threading.get_ident()}_{i}",
                               payload)

        started = time.time()
        threads = [threading.Thread(target=send, args=(n // 2,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return (n // 2 * 2) / (time.time() - started)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _up(requests, port) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/_seen", timeout=1).ok
    except requests.ConnectionError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--down-for", type=float, default=60.0)
    args = parser.parse_args()
    recreate_database()
    os.environ.update(ENV)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction

    from operations import events
    from operations.models import Attempt, Gate
    from webhooks import services
    from webhooks.models import Delivery

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    ports = [free_port() for _ in range(args.endpoints)]
    endpoints = [services.create_endpoint(owner, url=f"http://127.0.0.1:{port}/hook",
                                          event_types=["job.finished"]) for port in ports]
    receivers = {port: receiver(port, e.secret) for port, e in zip(ports[1:], endpoints[1:])}
    import requests

    for port in receivers:
        wait(lambda: _up(requests, port), 20)
    down = endpoints[0]
    procs = [subprocess.Popen([sys.executable, "manage.py", cmd], cwd=ROOT, env=os.environ.copy(),
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd in ("qcluster", "dispatcher")]
    total = args.events * args.endpoints
    try:
        started = time.time()
        for i in range(args.events):
            with transaction.atomic():
                events.emit("job.finished", owner.pk,
                            {"job": {"id": i, "title": f"job {i}", "counts": {"completed": 1}}},
                            key=f"bench:job.finished:{i}")
        emitted = time.time() - started
        wait(lambda: time.time() - started >= args.down_for, args.down_for + 1, 0.5)
        outage_attempts = Attempt.objects.filter(dependency=down.dependency).count()
        probes = Gate.objects.filter(key=down.dependency).values_list("probes", flat=True).first()
        receivers[ports[0]] = receiver(ports[0], down.secret)
        back = time.time()
        delivered = Delivery.objects.filter(delivered_at__isnull=False)
        wait(lambda: delivered.count() == total, 3600, 1.0)
        finished = time.time() - started
        healthy_done = (Delivery.objects.exclude(endpoint=down).order_by("-delivered_at")
                        .values_list("delivered_at", flat=True).first())
        down_done = (Delivery.objects.filter(endpoint=down).order_by("-delivered_at")
                     .values_list("delivered_at", flat=True).first())
        counts, duplicates = [], 0
        for port in ports:
            ids = [s["id"] for s in seen(port) if 200 <= s["answered"] < 300]
            counts.append(len(set(ids)))
            duplicates += len(ids) - len(set(ids))
        unverified = sum(not s["verified"] for port in ports for s in seen(port))
    finally:
        for proc in [*procs, *receivers.values()]:
            os.killpg(proc.pid, signal.SIGKILL)  # a cluster's workers too
            proc.wait()
    rate = baseline(min(total, 4000))
    healthy_seconds = healthy_done.timestamp() - started
    rows = [
        (f"events emitted (each its own transaction, starting {args.endpoints} deliveries)",
         f"{args.events:,} in {emitted:.1f} s ({args.events / emitted:,.0f} events/s)"),
        ("deliveries delivered / expected", f"{sum(counts):,} / {total:,}"),
        ("per endpoint: distinct webhook-ids received", ", ".join(f"{c:,}" for c in counts)),
        ("duplicates (a webhook-id accepted twice by one endpoint)", str(duplicates)),
        ("signatures that did not verify", str(unverified)),
        (f"attempts on the down endpoint during its {args.down_for:.0f} s outage",
         f"{outage_attempts} ({probes or 0} of them probes of its gate)"),
        ("healthy endpoints: everything delivered after", f"{healthy_seconds:.1f} s "
         f"({(total - args.events) / healthy_seconds:,.0f} deliveries/s)"),
        ("down endpoint: backlog delivered after it came back",
         f"{down_done.timestamp() - back:.1f} s"),
        ("everything delivered after", f"{finished:.1f} s ({args.events / finished:,.1f} "
         f"events/s, {total / finished:,.0f} deliveries/s)"),
        ("baseline: the same signed POSTs, 2 threads, no engine", f"{rate:,.0f} deliveries/s"),
    ]
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

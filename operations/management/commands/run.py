"""`manage.py run`: the whole app on one machine — web server, worker cluster, dispatcher —
after migrating and seeding the demo. Ctrl-C stops everything."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run Rebound: web server, workers, dispatcher, with a demo user."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.REBOUND["WEB_PORT"])
        parser.add_argument("--inference-port", type=int, default=8001,
                            help="Port of the local inference service it starts.")

    def handle(self, *args, **options):
        for name, port in (("--port", options["port"]),
                           ("--inference-port", options["inference_port"])):
            if not port_is_free(port):
                raise CommandError(f"Port {port} is in use (another Rebound running?): stop it "
                                   f"or choose another with {name}.")
        self.inference_port = options["inference_port"]
        if self.inference_port != 8001:
            base = f"http://127.0.0.1:{self.inference_port}"
            os.environ.setdefault("REBOUND_INFERENCE_URL", f"{base}/v1")
        # Webhooks may reach receivers on this machine (the README's receiver, for one).
        os.environ.setdefault("REBOUND_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed_demo")
        port = options["port"]
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        processes = {
            "web": [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind",
                    f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                    "--access-logfile", "-"],
            "workers": [*manage, "qcluster"],
            "dispatcher": [*manage, "dispatcher"],
            **self.extra_processes(manage),
        }
        children = {name: subprocess.Popen(argv, cwd=settings.BASE_DIR, start_new_session=True)
                    for name, argv in processes.items()}
        self.stdout.write(self.style.SUCCESS(
            f"Rebound is running at http://127.0.0.1:{port}/ (Ctrl-C stops it)"))
        try:
            self.wait(children)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop(children)

    def extra_processes(self, manage) -> dict:
        # The default AI provider, on loopback: region demo-flaky fails half its calls (one
        # call's trouble, retried per operation); region demo-outage is down for the first two
        # minutes (its gate opens, its work waits, then finishes by itself).
        faults = json.dumps([{"region": "demo-flaky", "error_rate": 0.5, "statuses": [500]},
                             {"region": "demo-outage", "error_rate": 1.0, "statuses": [503],
                              "for_seconds": 120}])
        return {"inference": [*manage, "inference_service", "--port", str(self.inference_port),
                              "--faults", faults]}

    def wait(self, children):
        # Ctrl-C, or SIGTERM from a process manager, stops everything; SIGINT is set explicitly
        # because a shell starting us in the background leaves it ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with code {child.returncode}; stopping")
                    return
            time.sleep(0.5)

    def stop(self, children):
        for name, child in children.items():
            if child.poll() is None and name == "workers":
                stop_cluster(child.pid)
            elif child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_cluster(main_pid: int) -> None:
    """Stop a django-q2 cluster without losing work: SIGTERM to its main process stops it
    gracefully (django-q2 does not exit cleanly when its whole process group is signalled),
    and SIGTERM to each worker running an operation makes it hand the operation back at its
    next heartbeat instead of being waited for."""
    from operations.lease import holder_pids_on_this_host
    from operations.models import Operation, Status

    os.kill(main_pid, signal.SIGTERM)
    holders = Operation.objects.filter(status=Status.PROCESSING).values_list("lease_holder",
                                                                            flat=True)
    for pid in holder_pids_on_this_host(holders):
        try:
            if os.getpgid(pid) == main_pid:  # one of this cluster's workers
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

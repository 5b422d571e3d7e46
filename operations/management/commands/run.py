"""`manage.py run`: the whole app on one machine — web server, worker cluster, dispatcher —
after migrating and seeding the demo. Ctrl-C stops everything."""
import json
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.env import env_int


class Command(BaseCommand):
    help = "Run Rebound: web server, workers, dispatcher, with a demo user."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000, minimum=1))

    def handle(self, *args, **options):
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
        # The default AI provider, on loopback; region demo-flaky fails half its calls.
        faults = json.dumps([{"region": "demo-flaky", "error_rate": 0.5, "statuses": [503, 429],
                              "retry_after": "1"}])
        return {"inference": [*manage, "inference_service", "--port", "8001", "--faults", faults]}

    def wait(self, children):
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with code {child.returncode}; stopping")
                    return
            time.sleep(0.5)

    def stop(self, children):
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

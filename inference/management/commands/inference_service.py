import json

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.service import Faults, InferenceServer


class Command(BaseCommand):
    help = "Serve the local OpenAI-compatible inference service (with fault injection)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--faults", default="",
                            help='JSON list of fault specs, e.g. [{"region": "demo-flaky", '
                                 '"error_rate": 0.5, "statuses": [503]}]')
        parser.add_argument("--verbose", action="store_true")

    def handle(self, *args, **options):
        faults = Faults()
        for spec in json.loads(options["faults"] or "[]"):
            faults.set(spec)
        server = InferenceServer(("127.0.0.1", options["port"]), settings.INFERENCE["API_KEY"],
                                 faults, verbose=options["verbose"])
        self.stdout.write(f"inference service on http://127.0.0.1:{server.server_port}/v1")
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

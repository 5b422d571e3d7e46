import logging
import signal
import threading

from django.core.management.base import BaseCommand

from operations import dispatcher
from operations.lease import this_host
from operations.models import Host


class Command(BaseCommand):
    help = "Run the dispatcher: due retries, lease recovery and lost-delivery sweep."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run one sweep and exit.")

    def handle(self, *args, **options):
        if options["once"]:
            self.stdout.write(str(dispatcher.sweep()))
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        logging.getLogger("rebound.dispatcher").info("dispatcher started")
        dispatcher.run_forever(stop=stop)
        # Stopped on purpose: say so, so that nobody waits for this host's heartbeat.
        Host.stop(this_host())

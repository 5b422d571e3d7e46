"""`/metrics` in Prometheus text format: counters and histograms of finished work (from the
total rollups: they never go down, whatever is pruned), and gauges of what is live now.
Prometheus turns them into rates over any window itself. Staff sessions, or
`Authorization: Bearer $REBOUND_METRICS_TOKEN`."""
import hmac

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from operations import gates, rollups
from operations.models import Grain

# (family, help, label, figure prefix): a counter per kind and the label's value.
COUNTERS = [
    ("rebound_operations", "Operations that finished, by final status", "status", "finished:"),
    ("rebound_attempts", "Attempts that ended, by outcome (crashed: the worker died and the "
     "engine recovered it)", "outcome", "attempts:"),
    ("rebound_manual_retries", "Manual retries that finished, by channel", "channel", "manual:"),
    ("rebound_manual_retries_succeeded", "Manual retries that completed, by channel",
     "channel", "manual_ok:"),
]


_collectors = []


def register(collector) -> None:
    """A workload's own figures (a prometheus-client collector), scraped with the engine's."""
    _collectors.append(collector)


class RetryCollector:
    """Reads the rollups and the live rows at each scrape: a few hundred rows at most."""

    def collect(self):
        per_kind = {kind: figures for (kind,), figures in rollups.read(Grain.TOTAL).items()}
        for name, help_text, label, prefix in COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=["kind", label])
            for kind, figures in sorted(per_kind.items()):
                for figure, value in sorted(figures.items()):
                    if figure.startswith(prefix):
                        family.add_metric([kind, figure.removeprefix(prefix)], value)
            yield family
        seconds = HistogramMetricFamily("rebound_time_to_success_seconds",
                                        "Seconds from creation to completion of completed "
                                        "operations", labels=["kind"])
        for kind, figures in sorted(per_kind.items()):
            seconds.add_metric([kind], rollups.histogram(figures), figures["tts_sum"])
        yield seconds
        in_state = GaugeMetricFamily("rebound_operations_in_state",
                                     "Operations live now, by status", labels=["kind", "status"])
        for row in rollups.live():
            in_state.add_metric([row["kind"], row["status"]], row["n"])
        yield in_state
        yield from self._gates()

    @staticmethod
    def _gates():
        """Each dependency's gate (1 while it is not closed) and the work waiting for it."""
        is_open = GaugeMetricFamily("rebound_gate_open", "1 while a dependency's gate is open "
                                    "or half-open (its work waits)", labels=["dependency"])
        waiting = GaugeMetricFamily("rebound_operations_waiting",
                                    "Operations waiting for a dependency", labels=["dependency"])
        for row in gates.board():
            is_open.add_metric([row["key"]], 0 if row["state"] == "closed" else 1)
            waiting.add_metric([row["key"]], row["waiting"])
        yield is_open
        yield waiting


def allowed(request) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.REBOUND["METRICS_TOKEN"]
    header = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def scrape(request):
    """The Prometheus scrape endpoint."""
    if not allowed(request):
        return HttpResponse("Forbidden: sign in as staff or send the metrics bearer token.\n",
                            status=403, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RetryCollector())
    for collector in _collectors:
        registry.register(collector)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

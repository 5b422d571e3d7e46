"""`/metrics` in Prometheus text format: the retry figures of operations.metrics, computed from
the rows at each scrape. Staff sessions, or `Authorization: Bearer $REBOUND_METRICS_TOKEN`."""
import hmac

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from operations import gates, metrics
from operations.models import Operation

FIGURES = {
    "success_rate": "Completed / (completed + failed) operations",
    "attempts_per_success": "Attempts a completed operation took, on average",
    "auto_retry_share": "Share of finished operations that needed more than one attempt",
    "manual_retries": "Operations started by a manual retry",
    "manual_retries_succeeded": "Manual retries that completed",
    "crashes_recovered": "Attempts whose worker died and were recovered",
}


class RetryCollector:
    """Reads the figures from the database at each scrape; nothing is counted on the side."""

    def collect(self):
        by_status = GaugeMetricFamily("rebound_operations", "Operations by kind and status",
                                      labels=["kind", "status"])
        for row in Operation.objects.values("kind", "status").order_by().annotate(
                n=Count("pk")):
            by_status.add_metric([row["kind"], row["status"]], row["n"])
        yield by_status
        yield from self._gates()
        rows = metrics.summary()
        yield from self._families(rows, ["kind"], "")
        yield from self._families([r for r in metrics.summary(key="region") if r["key"]],
                                  ["kind", "region"], "_by_region")

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

    def _families(self, rows, labels, suffix):
        for name, help_text in FIGURES.items():
            family = GaugeMetricFamily(f"rebound_{name}{suffix}", help_text, labels=labels)
            for row in rows:
                if row[name] is not None:
                    family.add_metric(self._labels(row, labels), row[name])
            yield family
        seconds = GaugeMetricFamily(f"rebound_time_to_success_seconds{suffix}",
                                    "Seconds from creation to completion",
                                    labels=[*labels, "quantile"])
        for row in rows:
            for quantile, field in (("0.5", "time_to_success_p50"),
                                    ("0.95", "time_to_success_p95")):
                if row[field] is not None:
                    seconds.add_metric([*self._labels(row, labels), quantile], row[field])
        yield seconds

    @staticmethod
    def _labels(row, labels):
        return [row["kind"]] + ([row["key"]] if "region" in labels else [])


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
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

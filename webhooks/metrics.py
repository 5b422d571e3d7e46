"""Webhook figures on /metrics. Deliveries by outcome are the engine's counters of their kind:
`rebound_operations_total{kind="webhooks.deliver",status=…}` (delivered = completed) and
`rebound_attempts_total{kind="webhooks.deliver",outcome=…}`; each endpoint's gate is
`rebound_gate_open{dependency="webhook:<id>"}`. Here: endpoints by state."""
from django.db.models import Count, Q
from prometheus_client.core import GaugeMetricFamily

from operations import prometheus
from webhooks.models import Endpoint


class EndpointCollector:
    def collect(self):
        counts = Endpoint.objects.aggregate(
            on=Count("id", filter=Q(enabled=True, failing_since__isnull=True)),
            failing=Count("id", filter=Q(enabled=True, failing_since__isnull=False)),
            off=Count("id", filter=Q(enabled=False)))
        family = GaugeMetricFamily("rebound_webhook_endpoints",
                                   "Webhook endpoints: on, failing (on, last delivery failed) "
                                   "or off", labels=["state"])
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family


prometheus.register(EndpointCollector())

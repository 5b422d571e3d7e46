"""Start-up check: REBOUND_WEBHOOK_ALLOWED_NETWORKS must name networks."""
import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_allowed_networks(app_configs, **kwargs):
    errors = []
    for name in settings.WEBHOOKS["ALLOWED_NETWORKS"]:
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            errors.append(Error(
                f"REBOUND_WEBHOOK_ALLOWED_NETWORKS: {name!r} is not a network.",
                hint="Name networks in CIDR form, comma-separated: 127.0.0.1/32,10.1.0.0/16.",
                id="rebound.E101"))
    return errors

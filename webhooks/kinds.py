"""The delivery kind: POST one event to one endpoint, signed, and judge the answer.

2xx delivered; 410 turns the endpoint off; 408, 429, 5xx, timeouts and connections that fail
are retried on a long schedule (1 min, then 3x longer each time up to 8 h, 15 attempts:
about 3 days), never sooner than a Retry-After; any other answer (a redirect too: none is
followed) fails at once. Every endpoint is a dependency with its own gate (`webhook:<id>`):
when it looks down its deliveries wait, spending no attempt, and it gets one probe at a time,
not a flood.
"""
import requests
import urllib3
from django.conf import settings

from operations.errors import PermanentError, TransientError, parse_retry_after, register_message
from operations.kinds import Completion, register
from operations.retry_policy import RetryPolicy
from webhooks import payloads, services, transport
from webhooks.models import Delivery

RETRY_AFTER_CAP = 6 * 3600.0
DELIVERY = RetryPolicy(max_attempts=15, base_delay=settings.WEBHOOKS["FIRST_RETRY_SECONDS"],
                       factor=3.0, max_delay=8 * 3600.0, time_limit=60.0)

register_message("webhook_unreachable", "The endpoint did not answer.",
                 "Nothing: it is retried for up to 3 days. Check that the endpoint is up.")
register_message("webhook_failed", "The endpoint answered with an error.",
                 "Nothing: it is retried for up to 3 days. Check the endpoint's logs.")
register_message("webhook_rejected", "The endpoint refused the delivery.",
                 "Fix the endpoint, then press Resend.")
register_message("webhook_redirected",
                 "The endpoint answered with a redirect; redirects are not followed.",
                 "Point the endpoint at the URL it redirects to, then press Resend.")
register_message("webhook_gone", "The endpoint answered 410 Gone, so it was turned off.",
                 "Turn the endpoint back on if it should receive events again.")
register_message("webhook_address_refused",
                 "The endpoint's address is not a public one, so nothing was sent.",
                 "Point the endpoint at a public https:// URL.")
register_message("webhook_endpoint_disabled", "The endpoint is turned off.",
                 "Turn the endpoint back on, then resend what it missed.")


def _delivery(context) -> Delivery:
    try:
        return Delivery.objects.select_related("event", "endpoint").get(
            event_id=context.input["event_id"], endpoint_id=context.input["endpoint_id"])
    except (Delivery.DoesNotExist, KeyError):
        raise PermanentError("input_missing", "delivery is gone") from None


def _exists(input: dict) -> bool:
    return Delivery.objects.filter(event_id=input.get("event_id"),
                                   endpoint_id=input.get("endpoint_id")).exists()


def dependency_of(input: dict) -> str:
    return f"webhook:{input.get('endpoint_id')}"


@register(services.KIND, policy=DELIVERY, label="Webhook delivery", input_available=_exists,
          dependency=dependency_of, quiet=True,
          wait_limit=settings.WEBHOOKS["GIVE_UP_SECONDS"])
def deliver(context):
    delivery = _delivery(context)
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        raise PermanentError("webhook_endpoint_disabled", "endpoint is turned off")
    try:
        answer = transport.post(endpoint.url, services.signing_secrets(endpoint),
                                delivery.event.webhook_id, payloads.body(delivery.event))
    except transport.Refused as refused:
        services.record_answer(delivery, None, str(refused), None)
        raise PermanentError("webhook_address_refused", str(refused)) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        # Timeouts, connections refused or reset, bad TLS: nothing came back.
        services.record_answer(delivery, None, type(exc).__name__, None)
        services.note_failure(endpoint, context.operation)
        raise TransientError("webhook_unreachable", f"{type(exc).__name__}: {exc}"[:300],
                             dependency_down=True) from None
    if 200 <= answer.status < 300:
        # Written with the fenced completion: delivered exactly when the operation completed.
        return Completion({"status": answer.status, "ms": answer.ms},
                          write=lambda: services.record_success(delivery, answer))
    services.record_answer(delivery, answer.status, answer.body, answer.ms)
    if answer.status == 410:
        services.turn_off(endpoint, "answered 410 Gone", operation=context.operation)
        raise PermanentError("webhook_gone", "410 Gone")
    if answer.status in (408, 429) or answer.status >= 500:
        services.note_failure(endpoint, context.operation)
        raise TransientError("webhook_failed", f"HTTP {answer.status}",
                             retry_after=parse_retry_after(answer.retry_after, RETRY_AFTER_CAP),
                             dependency_down=answer.status in (502, 503, 504))
    if 300 <= answer.status < 400:
        raise PermanentError("webhook_redirected", f"HTTP {answer.status}")
    raise PermanentError("webhook_rejected", f"HTTP {answer.status}")

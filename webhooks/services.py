"""Endpoints and deliveries: registering, rotating, fanning events out to deliveries, what the
endpoint answered, turning a failing endpoint off, Resend and Send test event."""
import base64
import logging
import secrets as random_secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from operations.chains import latest_of
from operations.events import CATALOGUE
from operations.models import Channel, Notification, Operation, Status
from operations.refusals import declare
from operations.services import (INVALID, RetryRefused, retry_failed, retry_operation,
                                 submit_many)
from webhooks import payloads, transport
from webhooks.models import Delivery, Endpoint, Event

log = logging.getLogger("rebound.webhooks")

KIND = "webhooks.deliver"  # the delivery kind (webhooks.kinds registers it)
ROTATION = timedelta(hours=24)  # both secrets sign for this long after a rotation
MAX_ENDPOINTS = 20
URL_REFUSED = declare("url_refused", 400,
                      "example.internal resolves to a private address; webhooks are only sent "
                      "to public addresses.")
TOO_MANY_ENDPOINTS = declare("too_many_endpoints", 409,
                             f"You have {MAX_ENDPOINTS} endpoints, the most allowed; delete one "
                             "first.")
ENDPOINT_DISABLED = declare("endpoint_disabled", 409,
                            "This endpoint is turned off; turn it on to send to it.")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(24)).decode()


def signing_secrets(endpoint: Endpoint) -> list[str]:
    """The secrets that sign now: the current one, and during a rotation the previous one."""
    keys = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and (
            endpoint.previous_secret_until > timezone.now()):
        keys.append(endpoint.previous_secret)
    return keys


def dependency_label(endpoint_id: str) -> str:
    url = Endpoint.objects.filter(pk=endpoint_id).values_list("url", flat=True).first()
    return f"the webhook endpoint {url}" if url else "a webhook endpoint"


# --- endpoints ---------------------------------------------------------------------------------

def check_event_types(types) -> list[str]:
    unknown = [t for t in types if t not in CATALOGUE]
    if unknown:
        raise RetryRefused(INVALID, 400,
                           f"There is no event type {unknown[0]!r}; the types are "
                           f"{', '.join(CATALOGUE)}.", {"event_types": list(CATALOGUE)})
    if not types:
        raise RetryRefused(INVALID, 400, "Choose at least one event type.",
                           {"event_types": list(CATALOGUE)})
    return list(dict.fromkeys(types))


def check_url(url: str) -> str:
    try:
        transport.check_url(url)
    except transport.Refused as refused:
        raise RetryRefused(URL_REFUSED, 400, str(refused), {"field": "url"}) from None
    return url


def create_endpoint(owner, *, url: str, event_types, description: str = "") -> Endpoint:
    """A new endpoint; its `secret` is readable on the returned object only (show it once)."""
    types = check_event_types(event_types)
    check_url(url)
    if Endpoint.objects.filter(owner=owner).count() >= MAX_ENDPOINTS:
        raise RetryRefused(TOO_MANY_ENDPOINTS, 409,
                           f"You have {MAX_ENDPOINTS} endpoints, the most allowed; delete one "
                           "first.")
    return Endpoint.objects.create(owner=owner, url=url, event_types=types,
                                   description=description, secret=new_secret())


def update_endpoint(endpoint: Endpoint, *, url=None, event_types=None, description=None,
                    enabled=None) -> Endpoint:
    if event_types is not None:
        endpoint.event_types = check_event_types(event_types)
    if url is not None and url != endpoint.url:
        endpoint.url = check_url(url)
    if description is not None:
        endpoint.description = description
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = ""
        endpoint.disabled_at = None if enabled else timezone.now()
        endpoint.failing_since = None
    endpoint.save()
    return endpoint


def rotate_secret(endpoint: Endpoint) -> Endpoint:
    """A new secret signs from now on; the old one signs beside it for 24 hours."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = timezone.now() + ROTATION
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until",
                                 "updated_at"])
    return endpoint


def delete_endpoint(endpoint: Endpoint) -> None:
    """Its deliveries go with it; their operations stay in the history (unreferenced)."""
    with transaction.atomic():
        Operation.cancel_all(Operation.objects.filter(kind=KIND,
                                                      dependency=endpoint.dependency))
        endpoint.delete()


# --- events become deliveries --------------------------------------------------------------

def fan_out(event) -> int:
    """The engine's listener: store the event for the owner's endpoints that subscribed to it
    and start one delivery per endpoint, in the transaction that made the event true. The
    same key asked for again starts nothing."""
    endpoints = [endpoint for endpoint in Endpoint.objects.select_related("owner").filter(
                 owner_id=event.owner_id, enabled=True) if event.type in endpoint.event_types]
    if not endpoints:
        return 0
    try:
        with transaction.atomic():
            stored = Event.objects.create(key=event.key, type=event.type,
                                          owner_id=event.owner_id, data=event.data)
    except IntegrityError:
        return 0  # told already
    start_deliveries(stored, endpoints)
    return len(endpoints)


def start_deliveries(event: Event, endpoints: list[Endpoint]) -> list[Delivery]:
    """One delivery per endpoint: their operations in one INSERT, the rows in another."""
    operations = submit_many(KIND, endpoints[0].owner, [
        {"event_id": str(event.pk), "endpoint_id": str(endpoint.pk)} for endpoint in endpoints],
        dependencies=[endpoint.dependency for endpoint in endpoints])
    return Delivery.objects.bulk_create([
        Delivery(event=event, endpoint=endpoint, operation=operation)
        for endpoint, operation in zip(endpoints, operations, strict=True)])


def check_enabled(endpoint: Endpoint) -> None:
    """Nothing is sent to an endpoint that is turned off, not even by hand."""
    if not endpoint.enabled:
        raise RetryRefused(ENDPOINT_DISABLED, 409,
                           "This endpoint is turned off; turn it on to send to it.")


def send_test(endpoint: Endpoint) -> Delivery:
    check_enabled(endpoint)
    with transaction.atomic():
        event = Event.objects.create(
            key=f"{payloads.TEST}:{endpoint.pk}:{random_secrets.token_hex(8)}",
            type=payloads.TEST, owner_id=endpoint.owner_id,
            data={"endpoint_id": str(endpoint.pk),
                  "message": "A test event from Rebound: your endpoint is reachable."})
        [delivery] = start_deliveries(event, [endpoint])
        return delivery


# --- what a delivery came to -----------------------------------------------------------------

def record_answer(delivery: Delivery, status, body: str, ms) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        response_status=status, response_body=body[:settings.WEBHOOKS["MAX_RESPONSE_CHARS"]],
        response_ms=ms, attempted_at=Now())


def record_success(delivery: Delivery, answer) -> None:
    """What a 2xx answer leaves: the answer, the delivery delivered, the endpoint healthy."""
    Delivery.objects.filter(pk=delivery.pk).update(
        response_status=answer.status,
        response_body=answer.body[:settings.WEBHOOKS["MAX_RESPONSE_CHARS"]],
        response_ms=answer.ms, attempted_at=Now(), delivered_at=Now())
    if delivery.endpoint.failing_since is not None:
        Endpoint.objects.filter(pk=delivery.endpoint_id).update(failing_since=None)


def note_failure(endpoint: Endpoint, operation: Operation) -> None:
    """Count from the first failure since the last success; past REBOUND_WEBHOOK_GIVE_UP, the
    endpoint is turned off and its owner told."""
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=Now())
    since = Endpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
    give_up = timedelta(seconds=settings.WEBHOOKS["GIVE_UP_SECONDS"])
    if since is not None and timezone.now() - since >= give_up:
        days = give_up.total_seconds() / 86400
        turn_off(endpoint, f"failed for {days:g} days" if days >= 1 else
                 f"failed for {give_up.total_seconds():.0f} s", operation=operation)


def turn_off(endpoint: Endpoint, reason: str, *, operation: Operation) -> bool:
    """Turn a failing endpoint off (once) and tell its owner in the app and the digest."""
    if not Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason[:200], disabled_at=Now(), updated_at=Now()):
        return False
    log.warning("webhook endpoint=%s turned off: %s", endpoint.pk, reason)
    Notification.objects.bulk_create([Notification(
        owner_id=endpoint.owner_id, operation=operation, kind=KIND,
        event=Notification.Event.FAILED,
        message=(f"Webhook endpoint {endpoint.url[:120]} was turned off: it {reason}. Turn it "
                 "back on under Webhooks to resend what it missed.")[:300])],
        ignore_conflicts=True)
    return True


# --- what the owner sees and does ----------------------------------------------------------------

def with_chains(deliveries) -> list[Delivery]:
    """Each delivery with `chain`: its first and latest operation (one query for all)."""
    rows = list(deliveries)
    chains = latest_of(d.operation_id for d in rows if d.operation_id)
    for delivery in rows:
        delivery.chain = chains.get(delivery.operation_id)
    return rows


def deliveries(endpoint: Endpoint, limit: int = 50) -> list[Delivery]:
    """The endpoint's latest deliveries, newest first, with their chains."""
    return with_chains(endpoint.deliveries.select_related("event")
                       .order_by("-created_at", "-id")[:limit])


def latest_operation(delivery: Delivery) -> Operation:
    """The operation that speaks for the delivery now (its latest Resend, or the first)."""
    return latest_of([delivery.operation_id])[delivery.operation_id].latest


def resend(delivery: Delivery, *, by, channel: str = Channel.WEB, reason: str = "",
           staff: bool = False) -> Operation:
    """A manual retry of the delivery's failed operation, through the one retry path (its
    refusals and limits). The event keeps its webhook-id."""
    check_enabled(delivery.endpoint)
    latest = latest_operation(delivery)
    return retry_operation(latest.pk, by=by, channel=channel, reason=reason, staff=staff)


def missed(endpoint: Endpoint) -> list[Operation]:
    """Every delivery of this endpoint that failed and was not resent since: what turning it
    back on offers to resend."""
    firsts = endpoint.deliveries.filter(delivered_at__isnull=True).values_list("operation_id",
                                                                               flat=True)
    chains = latest_of(firsts)
    return [c.latest for c in chains.values() if c.latest.status == Status.FAILED]


def resend_missed(endpoint: Endpoint, *, by, channel: str = Channel.WEB,
                  staff: bool = False) -> dict:
    check_enabled(endpoint)
    return retry_failed(missed(endpoint), by=by, channel=channel,
                        reason="resend what the endpoint missed", staff=staff)

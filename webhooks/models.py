"""Webhook endpoints, the events sent to them and one Delivery per (event, endpoint). A
delivery's sending is an engine operation (kind `webhooks.deliver`): its attempts, retries,
gate and manual retries are the engine's; the delivery row keeps what the endpoint last
answered."""
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    # Why it is off when it is ("answered 410 Gone", "failed for 3 days"); blank: by its owner.
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Signing secrets ("whsec_…"): shown once, never again. During a rotation the previous
    # one signs too, until `previous_secret_until`.
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    # Since when deliveries fail without a success in between (None: the last one succeeded).
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "enabled"], name="webhook_endpoint_owner")]

    def __str__(self):
        return self.url

    def get_absolute_url(self) -> str:
        return reverse("webhooks:endpoint", args=[self.pk])

    @property
    def dependency(self) -> str:
        return f"webhook:{self.pk}"


class Event(models.Model):
    """An event told to this owner's endpoints (stored only when one subscribed to it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The engine's name of the event: the same event asked for twice is stored once.
    key = models.CharField(max_length=300, unique=True)
    type = models.CharField(max_length=64)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.type} {self.webhook_id}"

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the same for every attempt and endpoint of this event."""
        return f"evt_{self.pk.hex}"


class Delivery(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # The first operation of the delivery's chain (a Resend is a retry in that chain).
    operation = models.OneToOneField("operations.Operation", on_delete=models.PROTECT,
                                     related_name="webhook_delivery", null=True)
    # What the endpoint last answered.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"],
                                               name="one_delivery_per_event_and_endpoint")]
        indexes = [models.Index(fields=["endpoint", "-created_at"],
                                name="webhook_delivery_endpoint")]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"{self.event.type} → {self.endpoint.url}"

"""The webhooks API: register endpoints (the signing secret is in the answer to create and to
rotate-secret, never again), list their deliveries, Resend one, send a test event, resend what
a turned-off endpoint missed. Owner-scoped: another user's endpoint is the same 404 as an
unknown id."""
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from operations.api.fields import StrictBooleanField, StrictCharField
from operations.api.problems import refusal
from operations.api.schema import contract
from operations.api.serializers import BulkRetryReportSerializer, OperationSerializer
from operations.api.views import RetryThrottle, invalid
from operations.events import CATALOGUE
from operations.models import Channel
from operations.services import MAX_REASON_LENGTH, RetryRefused, lookup
from webhooks import payloads, services
from webhooks.models import Delivery, Endpoint

EVENT_TYPES = serializers.ListField(child=serializers.ChoiceField(choices=list(CATALOGUE)),
                                    allow_empty=False, max_length=len(CATALOGUE))


class EndpointSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.CharField())
    signing_secret_rotating_until = serializers.DateTimeField(
        source="previous_secret_until", allow_null=True,
        help_text="Until then the previous secret signs too (a second `v1,` signature).")

    class Meta:
        model = Endpoint
        fields = ["id", "url", "description", "event_types", "enabled", "disabled_reason",
                  "disabled_at", "failing_since", "signing_secret_rotating_until",
                  "created_at"]


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="Verify deliveries with it (Standard Webhooks). "
                                             "Shown this once: store it now.")

    class Meta(EndpointSerializer.Meta):
        fields = EndpointSerializer.Meta.fields + ["secret"]


class NewEndpointSerializer(serializers.Serializer):
    url = StrictCharField(max_length=2000, help_text="https:// (http:// only to a network "
                                                     "the server allows)")
    event_types = EVENT_TYPES
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class EndpointChangeSerializer(serializers.Serializer):
    url = StrictCharField(max_length=2000, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(CATALOGUE)), allow_empty=False,
        max_length=len(CATALOGUE), required=False)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    enabled = StrictBooleanField(required=False)


class EventTypeSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()


def _payload(event_type: str, data) -> type:
    """The body of one event type: operation.failed → OperationFailedPayload."""
    name = event_type.replace(".", "_").title().replace("_", "")
    return type(f"{name}Payload", (serializers.Serializer,), {
        "type": serializers.ChoiceField(choices=[event_type]),
        "timestamp": serializers.DateTimeField(),
        "data": data(),
        "__doc__": payloads.TYPES[event_type],
    })


PAYLOAD = PolymorphicProxySerializer(
    component_name="WebhookPayload", resource_type_field_name="type",
    serializers={name: _payload(name, data) for name, data in payloads.DATA.items()})


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="event.webhook_id")
    event_type = serializers.CharField(source="event.type")
    status = serializers.SerializerMethodField(help_text="pending, waiting, delivering, "
                                               "retrying, delivered, failed, cancelled")
    attempts = serializers.SerializerMethodField()
    resends = serializers.SerializerMethodField()
    operation_id = serializers.SerializerMethodField(
        help_text="The operation that speaks for the delivery now (the latest Resend).")
    payload = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "webhook_id", "event_type", "status", "attempts", "resends",
                  "response_status", "response_body", "response_ms", "attempted_at",
                  "delivered_at", "created_at", "operation_id", "payload"]

    def _latest(self, delivery):
        chain = getattr(delivery, "chain", None)
        return chain.latest if chain else None

    def get_status(self, delivery) -> str:
        return status_of(self._latest(delivery))

    def get_attempts(self, delivery) -> int:
        latest = self._latest(delivery)
        return latest.attempt_count if latest else 0

    def get_resends(self, delivery) -> int:
        latest = self._latest(delivery)
        return latest.retry_number if latest else 0

    def get_operation_id(self, delivery) -> serializers.UUIDField(allow_null=True):
        latest = self._latest(delivery)
        return str(latest.pk) if latest else None

    @extend_schema_field(PAYLOAD)
    def get_payload(self, delivery):
        return payloads.body(delivery.event)


def status_of(operation) -> str:
    if operation is None:
        return "pending"
    return {"pending": "pending", "processing": "delivering", "retry_scheduled": "retrying",
            "waiting": "waiting", "completed": "delivered", "failed": "failed",
            "cancelled": "cancelled"}.get(operation.status, operation.status)


class ResendSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, default="",
                             max_length=MAX_REASON_LENGTH)


class EndpointViewSet(viewsets.GenericViewSet):
    """Your webhook endpoints: where Rebound POSTs the events you subscribe to."""

    serializer_class = EndpointSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Endpoint.objects.none()
        return Endpoint.objects.filter(owner=self.request.user)

    def get_object(self):
        return lookup(lambda: self.get_queryset().get(pk=self.kwargs["pk"]),
                      "No webhook endpoint with that id.")

    @extend_schema(responses=contract({200: EndpointSerializer(many=True)}, "invalid"))
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(request=NewEndpointSerializer,
                   responses=contract({201: EndpointWithSecretSerializer}, "invalid",
                                      services.URL_REFUSED, services.TOO_MANY_ENDPOINTS,
                                      body=True))
    def create(self, request):
        """Register an endpoint. The answer holds its signing secret: the only time it is
        shown."""
        form = NewEndpointSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        try:
            endpoint = services.create_endpoint(request.user, **form.validated_data)
        except RetryRefused as refused:
            return refusal(refused)
        return Response(EndpointWithSecretSerializer(endpoint).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses=contract({200: EndpointSerializer}, "not_found"))
    def retrieve(self, request, pk=None):
        return Response(EndpointSerializer(self.get_object()).data)

    @extend_schema(request=EndpointChangeSerializer,
                   responses=contract({200: EndpointSerializer}, "invalid", "not_found",
                                      services.URL_REFUSED, body=True))
    def partial_update(self, request, pk=None):
        """Change the URL, the event types or the description; turn it off or on."""
        endpoint = self.get_object()
        form = EndpointChangeSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        try:
            endpoint = services.update_endpoint(endpoint, **form.validated_data)
        except RetryRefused as refused:
            return refusal(refused)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(responses=contract({204: None}, "not_found"))
    def destroy(self, request, pk=None):
        """Delete the endpoint and its deliveries (what is still to be sent is cancelled)."""
        services.delete_endpoint(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=contract({200: EndpointWithSecretSerializer},
                                                    "not_found", post=True))
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret (in this answer only); the old one goes on signing beside it
        for 24 hours, so receivers can switch without missing a delivery."""
        return Response(EndpointWithSecretSerializer(
            services.rotate_secret(self.get_object())).data)

    @extend_schema(request=None, responses=contract({202: DeliverySerializer}, "not_found",
                                                    services.ENDPOINT_DISABLED, post=True))
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `webhook.test` event to this endpoint now."""
        try:
            delivery = services.send_test(self.get_object())
        except RetryRefused as refused:
            return refusal(refused)
        [delivery] = services.with_chains([delivery])
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=contract({200: DeliverySerializer(many=True)}, "invalid",
                                      "not_found"))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """This endpoint's deliveries, newest first, with what it answered."""
        endpoint = self.get_object()
        page = self.paginate_queryset(endpoint.deliveries.select_related("event")
                                      .order_by("-created_at", "-id"))
        return self.get_paginated_response(
            DeliverySerializer(services.with_chains(page), many=True).data)

    @extend_schema(request=ResendSerializer,
                   responses=contract({202: OperationSerializer}, "invalid", "reason_too_long",
                                      "not_found", "not_failed", "already_retried",
                                      "retry_limit_reached", "input_missing",
                                      services.ENDPOINT_DISABLED, "throttled", body=True))
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle],
            url_path=r"deliveries/(?P<delivery_id>\d+)/resend")
    def resend(self, request, pk=None, delivery_id=None):
        """Resend a failed delivery: a manual retry, with the same `webhook-id`, through the
        one retry path (its refusals and its limit)."""
        endpoint = self.get_object()
        form = ResendSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        try:
            delivery = lookup(lambda: endpoint.deliveries.get(pk=delivery_id),
                              "No delivery with that id.")
            child = services.resend(delivery, by=request.user, channel=Channel.API,
                                    reason=form.validated_data["reason"])
        except RetryRefused as refused:
            return refusal(refused)
        return Response(OperationSerializer(child).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=contract({202: BulkRetryReportSerializer},
                                                    "not_found", services.ENDPOINT_DISABLED,
                                                    "throttled", post=True))
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle],
            url_path="resend-missed")
    def resend_missed(self, request, pk=None):
        """Resend every delivery of this endpoint that failed (what it missed while it was
        failing or turned off), staggered like any bulk retry."""
        try:
            report = services.resend_missed(self.get_object(), by=request.user,
                                            channel=Channel.API)
        except RetryRefused as refused:
            return refusal(refused)
        return Response({**report, "dry_run": False}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=contract({200: EventTypeSerializer(many=True)}))
    @action(detail=False, methods=["get"], url_path="event-types", pagination_class=None)
    def event_types(self, request):
        """The event catalogue: what each type means (its payload is in the schema as
        WebhookPayload)."""
        return Response([{"type": name, "description": text}
                         for name, text in CATALOGUE.items()])

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from django.conf import settings

from operations.api.idempotency import respond_once
from operations.api.problems import problem, refusal
from operations.api.serializers import (OperationDetailSerializer, OperationSerializer,
                                        ProblemSerializer, RetryRequestSerializer)
from operations.models import Channel, Operation, Status
from operations.services import RetryRefused, cancel_operation, retry_operation

PROBLEM = OpenApiResponse(ProblemSerializer)
IDEMPOTENCY_KEY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                   description="Repeat the call safely: the first answer is replayed.")


def api_retry(request, operation_id) -> Response:
    """The API side of manual retry: 202 with the new operation, or the typed refusal."""
    form = RetryRequestSerializer(data=request.data)
    if not form.is_valid():
        too_long = any(e.code == "max_length" for e in form.errors.get("reason", []))
        return problem(400, "reason_too_long" if too_long else "invalid",
                       "The reason must be text of at most 500 characters.", errors=form.errors)
    try:
        child = retry_operation(operation_id, by=request.user, channel=Channel.API,
                                reason=form.validated_data["reason"])
    except RetryRefused as refused:
        return refusal(refused)
    return Response(OperationSerializer(child).data, status=status.HTTP_202_ACCEPTED)


class RetryThrottle(UserRateThrottle):
    """Per-user limit on retry calls; its 429 says `throttled`, not `retry_limit_reached`."""

    scope = "retry"

    def get_rate(self):
        return settings.REBOUND["RETRY_THROTTLE"]


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       viewsets.GenericViewSet):
    """The caller's own operations, their attempts and lineage; retry and cancel."""

    serializer_class = OperationSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Operation.objects.none()
        operations = Operation.objects.filter(owner=self.request.user).select_related(
            "triggered_by")
        if self.action == "list":
            for name in ("status", "kind", "error_code"):
                if value := self.request.query_params.get(name):
                    operations = operations.filter(**{name: value})
        return operations

    def get_serializer_class(self):
        return OperationDetailSerializer if self.action == "retrieve" else OperationSerializer

    @extend_schema(parameters=[
        OpenApiParameter("status", str, enum=Status.values),
        OpenApiParameter("kind", str), OpenApiParameter("error_code", str)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RetryRequestSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={202: OperationSerializer, 400: PROBLEM, 404: PROBLEM, 409: PROBLEM,
                              429: PROBLEM})
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle])
    def retry(self, request, pk=None):
        """Retry a failed operation: 202 with the NEW operation, linked to its parent."""
        return respond_once(request, lambda: api_retry(request, pk))

    @extend_schema(request=None, parameters=[IDEMPOTENCY_KEY],
                   responses={200: OperationSerializer, 404: PROBLEM, 409: PROBLEM})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a pending or scheduled operation."""
        return respond_once(request, lambda: self._cancel(request, pk))

    def _cancel(self, request, pk):
        try:
            operation = cancel_operation(pk, by=request.user)
        except RetryRefused as refused:
            return refusal(refused)
        return Response(OperationSerializer(operation).data)

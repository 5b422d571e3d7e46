from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from django.conf import settings

from operations.api.idempotency import respond_once
from operations.api.problems import problem, refusal
from operations.api.schema import IDEMPOTENT, contract
from operations.api.serializers import (BulkRetryReportSerializer, BulkRetryRequestSerializer,
                                        OperationDetailSerializer, OperationSerializer,
                                        RetryRequestSerializer)
from operations.models import Channel, Operation, Status
from operations.services import (RetryRefused, cancel_operation, retry_failed,
                                 retry_operation)

IDEMPOTENCY_KEY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                   description="Repeat the call safely: the first answer is replayed.")


def invalid(form, field="reason") -> Response:
    """400 for a request body that does not validate; a too-long reason has its own code."""
    too_long = any(e.code == "max_length" for e in form.errors.get(field, []))
    if too_long:
        return problem(400, "reason_too_long", "The reason may be at most 500 characters.",
                       errors=form.errors)
    return problem(400, "invalid", "Some fields are not valid.", errors=form.errors)


def bulk_retry_response(request, operations, *, reason: str, dry_run: bool) -> Response:
    """The API side of bulk retry: the report, 200 for a dry run and 202 otherwise."""
    try:
        report = retry_failed(operations, by=request.user, channel=Channel.API, reason=reason,
                              dry_run=dry_run)
    except RetryRefused as refused:
        return refusal(refused)
    return Response({**report, "dry_run": dry_run},
                    status=status.HTTP_200_OK if dry_run else status.HTTP_202_ACCEPTED)


def api_retry(request, operation_id) -> Response:
    """The API side of manual retry: 202 with the new operation, or the typed refusal."""
    form = RetryRequestSerializer(data=request.data)
    if not form.is_valid():
        return invalid(form)
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
            status_filter = self.request.query_params.get("status")
            if status_filter is not None and status_filter not in Status.values:
                raise ValidationError({"status": [f"One of {', '.join(Status.values)}."]})
            for name in ("status", "kind", "error_code"):
                if value := self.request.query_params.get(name):
                    operations = operations.filter(**{name: value})
        return operations

    def get_serializer_class(self):
        return OperationDetailSerializer if self.action == "retrieve" else OperationSerializer

    @extend_schema(parameters=[
        OpenApiParameter("status", str, enum=Status.values),
        OpenApiParameter("kind", str), OpenApiParameter("error_code", str)],
        responses=contract({200: OperationSerializer(many=True)}, "invalid"))
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=contract({200: OperationDetailSerializer}, "not_found"))
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=RetryRequestSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({202: OperationSerializer}, "invalid", "reason_too_long",
                                      "not_found", "not_failed", "already_retried",
                                      "input_missing", "retry_limit_reached", "throttled",
                                      *IDEMPOTENT, body=True))
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle])
    def retry(self, request, pk=None):
        """Retry a failed operation: 202 with the NEW operation, linked to its parent."""
        return respond_once(request, lambda: api_retry(request, pk))

    @extend_schema(request=BulkRetryRequestSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({200: BulkRetryReportSerializer,
                                       202: BulkRetryReportSerializer},
                                      "invalid", "reason_too_long", "throttled", *IDEMPOTENT,
                                      body=True))
    @action(detail=False, methods=["post"], url_path="retry-failed",
            throttle_classes=[RetryThrottle])
    def retry_failed(self, request):
        """Retry every failed operation of yours that has not been retried yet (optionally of
        one kind, error code, or failed after a time). Children start staggered, at most
        REBOUND_BULK_RETRY_RATE per second. 200 with the report for a dry run, 202 otherwise."""
        return respond_once(request, lambda: self._retry_failed(request))

    def _retry_failed(self, request):
        form = BulkRetryRequestSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        options = form.validated_data
        failed = Operation.objects.filter(owner=request.user, status=Status.FAILED,
                                          child__isnull=True)
        if "kind" in options:
            failed = failed.filter(kind=options["kind"])
        if "error_code" in options:
            failed = failed.filter(error_code=options["error_code"])
        if "failed_after" in options:
            failed = failed.filter(finished_at__gt=options["failed_after"])
        return bulk_retry_response(request, failed.order_by("finished_at", "pk"),
                                   reason=options["reason"], dry_run=options["dry_run"])

    @extend_schema(request=None, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({200: OperationSerializer}, "not_found", "not_cancellable",
                                      *IDEMPOTENT, post=True))
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

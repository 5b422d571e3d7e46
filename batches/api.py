"""The batches API: submit essays, run the pipeline up to a phase, read every phase of every
essay, retry a phase (with a reason). Owner-scoped: another user's batch is the same 404 as an
unknown id."""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from batches import pipeline
from batches.models import Batch
from batches.services import MAX_ESSAY_CHARS, MAX_ESSAYS, create_batch
from operations.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from operations.api.idempotency import respond_once
from operations.api.problems import refusal
from operations.api.schema import IDEMPOTENT, contract
from operations.api.serializers import (BulkRetryReportSerializer, ChainFieldsMixin,
                                        ErrorSummarySerializer, WaitingSerializer, waiting_of)
from operations.api.views import IDEMPOTENCY_KEY, RetryThrottle, invalid
from operations.errors import what_to_do
from operations.models import Channel
from operations.services import MAX_REASON_LENGTH, RetryRefused, lookup



class ItemErrorSerializer(ErrorSummarySerializer):
    what_to_do = serializers.CharField()
    permanent = serializers.BooleanField(help_text="Never retried automatically.")


class LeftOutSerializer(serializers.Serializer):
    phase = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class ItemSerializer(ChainFieldsMixin, serializers.Serializer):
    """One phase of one essay (essay_id null: the batch-only phase)."""

    essay_id = serializers.IntegerField(source="essay.pk", allow_null=True, default=None)
    status = serializers.ChoiceField(choices=["not_started", "pending", "running", "waiting",
                                              "completed", "failed", "failed_permanently",
                                              "left_out"])
    waiting = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    left_out = serializers.SerializerMethodField()
    output = serializers.JSONField(source="output.output", allow_null=True, default=None)

    def get_waiting(self, item) -> WaitingSerializer(allow_null=True):
        return waiting_of(item.operation)

    def get_error(self, item) -> ItemErrorSerializer(allow_null=True):
        op = item.operation
        if op is None or not item.failed:
            return None
        return {"code": op.error_code, "message": op.error_message,
                "what_to_do": what_to_do(op.error_code), "permanent": item.permanent}

    def get_left_out(self, item) -> LeftOutSerializer(allow_null=True):
        cause = item.left_out_by
        if cause is None:
            return None
        return {"phase": cause.phase, "code": cause.operation.error_code,
                "message": cause.operation.error_message}


class PhaseSerializer(serializers.Serializer):
    phase = serializers.CharField()
    label = serializers.CharField()
    batch_only = serializers.BooleanField()
    items = ItemSerializer(many=True)


class EssaySerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    index = serializers.IntegerField()
    words = serializers.SerializerMethodField()

    def get_words(self, essay) -> int:
        return len(essay.text.split())


class BatchSerializer(serializers.ModelSerializer):
    class Meta:
        model = Batch
        fields = ["id", "title", "region", "requested_phase", "created_at"]


class BatchDetailSerializer(BatchSerializer):
    essays = EssaySerializer(source="state.essays", many=True)
    phases = serializers.SerializerMethodField()
    ranking = serializers.JSONField(source="state.ranking", allow_null=True)
    waiting_for = serializers.SerializerMethodField(
        help_text="Essays the batch-only phase waits for (their feedback has not finished).")
    busy = serializers.BooleanField(
        source="state.busy", help_text="True while a step runs or waits to run, or a step has "
        "just ended and the next is about to start: poll until it is false.")

    class Meta(BatchSerializer.Meta):
        fields = BatchSerializer.Meta.fields + ["essays", "phases", "ranking", "waiting_for",
                                                "busy"]

    def get_phases(self, batch) -> PhaseSerializer(many=True):
        state = batch.state
        return PhaseSerializer([
            {"phase": phase, "label": pipeline.PHASE_LABELS[phase],
             "batch_only": phase == pipeline.BATCH_ONLY,
             "items": ([state.item(phase)] if phase == pipeline.BATCH_ONLY
                       else [state.item(phase, essay) for essay in state.essays])}
            for phase in pipeline.PHASES], many=True).data

    def get_waiting_for(self, batch) -> list[int]:
        return [essay.pk for essay in batch.state.waiting_for()]


class NewBatchSerializer(serializers.Serializer):
    title = StrictCharField(max_length=200)
    essays = serializers.ListField(
        child=StrictCharField(max_length=MAX_ESSAY_CHARS), allow_empty=False,
        max_length=MAX_ESSAYS)
    region = StrictCharField(required=False, allow_blank=True, default="")

    def validate_region(self, region):
        if region and region not in settings.INFERENCE["REGIONS"]:
            raise serializers.ValidationError(
                f"Unknown region {region!r}; the known regions are "
                f"{', '.join(settings.INFERENCE['REGIONS'])}.")
        return region


class PipelineRequestSerializer(serializers.Serializer):
    requested_pipeline = StrictCharField(help_text=f"One of {', '.join(pipeline.PHASES)}.")
    is_retry = StrictBooleanField(required=False, default=False)
    retry_reason = StrictCharField(required=False, allow_null=True, allow_blank=True,
                                   default=None, max_length=MAX_REASON_LENGTH)


class PipelineAcceptedSerializer(serializers.Serializer):
    requested_pipeline = serializers.CharField()
    is_retry = serializers.BooleanField()
    started = serializers.IntegerField(required=False, help_text="Steps started now.")
    report = BulkRetryReportSerializer(required=False)


class RetryPhaseSerializer(serializers.Serializer):
    phase = StrictCharField()
    essay_ids = serializers.ListField(child=StrictIntegerField(), required=False,
                                      allow_empty=False)
    retry_reason = StrictCharField(required=False, allow_null=True, allow_blank=True,
                                   default=None, max_length=MAX_REASON_LENGTH)


class PhaseRetriedSerializer(BulkRetryReportSerializer):
    phase = serializers.CharField()


def detail(batch: Batch) -> dict:
    batch.state = pipeline.read(batch)
    return BatchDetailSerializer(batch).data


class BatchViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Your batches of essays."""

    serializer_class = BatchSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Batch.objects.none()
        return Batch.objects.filter(owner=self.request.user)

    def get_object(self):
        return lookup(lambda: self.get_queryset().get(pk=self.kwargs["pk"]),
                      "No batch with that id.")

    @extend_schema(responses=contract({200: BatchSerializer(many=True)}, "invalid"))
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=contract({200: BatchDetailSerializer}, "not_found"))
    def retrieve(self, request, pk=None):
        """Every phase of every essay: status, error, output and retry fields; the ranking."""
        return Response(detail(self.get_object()))

    @extend_schema(request=NewBatchSerializer,
                   responses=contract({201: BatchDetailSerializer}, "invalid", body=True))
    def create(self, request):
        """Submit essays; nothing runs until the pipeline is requested."""
        form = NewBatchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        batch = create_batch(request.user, **form.validated_data)
        return Response(detail(batch), status=status.HTTP_201_CREATED)

    @extend_schema(request=PipelineRequestSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({202: PipelineAcceptedSerializer}, "invalid",
                                      "reason_too_long", "unknown_phase", "not_found",
                                      "phase_not_ready", "nothing_to_retry", "throttled",
                                      *IDEMPOTENT, body=True))
    @action(detail=True, methods=["post"], throttle_classes=[RetryThrottle])
    def pipeline(self, request, pk=None):
        """Run every phase up to and including `requested_pipeline`; with `is_retry`, retry
        that phase's failed items instead (as retry-phase does)."""
        return respond_once(request, lambda: self._pipeline(request))

    def _pipeline(self, request):
        form = PipelineRequestSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form, "retry_reason")
        data, batch = form.validated_data, self.get_object()
        phase = data["requested_pipeline"]
        try:
            if data["is_retry"]:
                report = pipeline.retry_phase(batch, phase, by=request.user, channel=Channel.API,
                                              reason=data["retry_reason"] or "")
                body = {"requested_pipeline": phase, "is_retry": True, "report": report}
            else:
                started = pipeline.request_pipeline(batch, phase)
                body = {"requested_pipeline": phase, "is_retry": False, "started": started}
        except RetryRefused as refused:
            return refusal(refused)
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=RetryPhaseSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({202: PhaseRetriedSerializer}, "invalid",
                                      "reason_too_long", "unknown_phase", "batch_only_phase",
                                      "unknown_essay", "not_found", "phase_not_ready",
                                      "nothing_to_retry", "throttled", *IDEMPOTENT, body=True))
    @action(detail=True, methods=["post"], url_path="retry-phase",
            throttle_classes=[RetryThrottle])
    def retry_phase(self, request, pk=None):
        """Retry the failed items of one phase (all, or those essays), with a reason recorded
        on every new operation; they then continue through the later phases."""
        return respond_once(request, lambda: self._retry_phase(request))

    def _retry_phase(self, request):
        form = RetryPhaseSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form, "retry_reason")
        data, batch = form.validated_data, self.get_object()
        try:
            report = pipeline.retry_phase(batch, data["phase"], by=request.user,
                                          channel=Channel.API,
                                          reason=data["retry_reason"] or "",
                                          essay_ids=data.get("essay_ids"))
        except RetryRefused as refused:
            return refusal(refused)
        return Response({"phase": data["phase"], **report, "dry_run": False},
                        status=status.HTTP_202_ACCEPTED)

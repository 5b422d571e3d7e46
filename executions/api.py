"""The jobs API: create a job, follow its grid, read a cell's history, retry a cell or every
failed one. Owner-scoped: another user's job or execution is the same 404 as an unknown id."""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from executions import grid, services
from executions.models import Execution, Job
from operations.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from operations.api.idempotency import respond_once
from operations.api.problems import problem, refusal
from operations.api.schema import IDEMPOTENT, contract
from operations.api.serializers import (BulkRetryReportSerializer, ChainFieldsMixin,
                                        ChainHistoryMixin, ErrorSummarySerializer,
                                        WaitingSerializer, waiting_of)
from operations.api.views import IDEMPOTENCY_KEY, RetryThrottle, bulk_retry_response, invalid
from operations.models import Channel
from operations.refusals import declare
from operations.services import MAX_REASON_LENGTH, RetryRefused, lookup

MAX_REGIONS, MAX_QUESTIONS, MAX_QUESTION_CHARS = 20, 200, 4000
CELL_MISMATCH = declare("cell_mismatch", 400,
                        "This execution is us-east × question 0, not eu-west × question 0.")


class CellErrorSerializer(ErrorSummarySerializer):
    what_to_do = serializers.CharField()
    reference = serializers.CharField()


class ExecutionSerializer(ChainFieldsMixin, serializers.Serializer):
    """One cell: its state and retry fields, all derived from its operation chain."""

    id = serializers.IntegerField(source="execution.pk")
    region = serializers.CharField(source="execution.region")
    question_index = serializers.IntegerField(source="execution.question_index")
    status = serializers.ChoiceField(choices=grid.STATUSES)
    waiting = serializers.SerializerMethodField()
    answer = serializers.CharField(allow_null=True)
    error = CellErrorSerializer(allow_null=True)

    def get_waiting(self, cell) -> WaitingSerializer(allow_null=True):
        return waiting_of(cell.operation)


class ExecutionDetailSerializer(ChainHistoryMixin, ExecutionSerializer):
    question = serializers.CharField(source="question_text")


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()


class JobSerializer(serializers.ModelSerializer):
    questions = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField(help_text="Cells by status.")
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "title", "model", "regions", "questions", "created_at", "counts",
                  "progress"]

    def get_questions(self, job) -> list[str]:
        return [q.text for q in job.questions.all()]

    def get_counts(self, job) -> dict[str, int]:
        return job.progress.counts

    def get_progress(self, job) -> ProgressSerializer:
        return ProgressSerializer(job.progress).data


class JobCreatedSerializer(JobSerializer):
    executions = ExecutionSerializer(source="cells", many=True)

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["executions"]


class NewJobSerializer(serializers.Serializer):
    title = StrictCharField(max_length=200)
    model = StrictCharField(max_length=100, required=False)
    regions = serializers.ListField(child=StrictCharField(max_length=40),
                                    allow_empty=False, max_length=MAX_REGIONS)
    questions = serializers.ListField(
        child=StrictCharField(max_length=MAX_QUESTION_CHARS), allow_empty=False,
        max_length=MAX_QUESTIONS)

    def validate_regions(self, regions):
        known = settings.INFERENCE["REGIONS"]
        unknown = [r for r in regions if r not in known]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown region {unknown[0]!r}; the known regions are {', '.join(known)}.")
        if len(set(regions)) != len(regions):
            raise serializers.ValidationError("Each region may be listed once.")
        return regions


class RetryQuestionSerializer(serializers.Serializer):
    region = StrictCharField(max_length=40)
    question_index = StrictIntegerField(min_value=0)
    reason = StrictCharField(required=False, allow_blank=True, default="",
                                   max_length=MAX_REASON_LENGTH)


class JobRetryFailedSerializer(serializers.Serializer):
    dry_run = StrictBooleanField(required=False, default=False)
    reason = StrictCharField(required=False, allow_blank=True, default="",
                                   max_length=MAX_REASON_LENGTH)


def with_progress(jobs) -> list[Job]:
    """Attach each job's progress, reading the cells of all of them at once."""
    jobs = list(jobs)
    cells = grid.cells_for(Execution.objects.filter(job__in=jobs))
    for job in jobs:
        job.progress = grid.progress_of([c for c in cells if c.execution.job_id == job.pk])
    return jobs


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your jobs: questions asked of one model in several regions."""

    serializer_class = JobSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        jobs = Job.objects.filter(owner=self.request.user)
        # Only the job's own representations list its questions.
        return jobs.prefetch_related("questions") if self.action in ("list", "retrieve") else jobs

    def get_object(self):
        return lookup(lambda: self.get_queryset().get(pk=self.kwargs["pk"]),
                         "No job with that id.")

    @extend_schema(responses=contract({200: JobSerializer(many=True)}, "invalid"))
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(JobSerializer(with_progress(page), many=True).data)

    @extend_schema(responses=contract({200: JobSerializer}, "not_found"))
    def retrieve(self, request, *args, **kwargs):
        [job] = with_progress([self.get_object()])
        return Response(JobSerializer(job).data)

    @extend_schema(request=NewJobSerializer,
                   responses=contract({201: JobCreatedSerializer}, "invalid", body=True))
    def create(self, request):
        """Create a job: one execution per (region, question) starts, a few at a time."""
        form = NewJobSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        job = services.create_job(request.user, title=data["title"],
                                  model=data.get("model") or settings.INFERENCE["MODEL"],
                                  regions=data["regions"], questions=data["questions"])
        job.cells = grid.cells_of(job)
        job.progress = grid.progress_of(job.cells)
        return Response(JobCreatedSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=contract({200: ExecutionSerializer(many=True)}, "not_found"))
    @action(detail=True, methods=["get"], url_path="executions/all", pagination_class=None)
    def executions(self, request, pk=None):
        """Every cell of the job with its status, retry fields and answer (a constant number
        of queries, whatever the job's size)."""
        return Response(ExecutionSerializer(grid.cells_of(self.get_object()), many=True).data)

    @extend_schema(request=JobRetryFailedSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({200: BulkRetryReportSerializer,
                                       202: BulkRetryReportSerializer},
                                      "invalid", "reason_too_long", "not_found", "throttled",
                                      *IDEMPOTENT, body=True))
    @action(detail=True, methods=["post"], url_path="retry-failed",
            throttle_classes=[RetryThrottle])
    def retry_failed(self, request, pk=None):
        """Retry every failed, timed-out or errored cell (staggered): 200 with the report for
        a dry run, 202 otherwise."""
        return respond_once(request, lambda: self._retry_failed(request))

    def _retry_failed(self, request):
        form = JobRetryFailedSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        failed = services.failed_operations(grid.cells_of(self.get_object()))
        return bulk_retry_response(request, failed, reason=form.validated_data["reason"],
                                   dry_run=form.validated_data["dry_run"])


class ExecutionViewSet(viewsets.GenericViewSet):
    """One cell of one of your jobs."""

    serializer_class = ExecutionDetailSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Execution.objects.none()
        return Execution.objects.filter(job__owner=self.request.user)

    def get_object(self):
        return lookup(lambda: self.get_queryset().get(pk=self.kwargs["pk"]),
                         "No execution with that id.")

    @extend_schema(responses=contract({200: ExecutionDetailSerializer}, "not_found"))
    @action(detail=True, methods=["get"])
    def details(self, request, pk=None):
        """The cell with every manual retry and every attempt of every operation in its chain,
        oldest first."""
        execution = self.get_object()
        cell = grid.cell_with_history(execution)
        cell.question_text = execution.job.questions.get(index=execution.question_index).text
        return Response(ExecutionDetailSerializer(cell).data)

    @extend_schema(request=RetryQuestionSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses=contract({202: ExecutionSerializer}, "invalid", "reason_too_long",
                                      "cell_mismatch", "not_found", "not_failed",
                                      "already_retried", "input_missing", "retry_limit_reached",
                                      "throttled", *IDEMPOTENT, body=True))
    @action(detail=True, methods=["post"], url_path="retry-question",
            throttle_classes=[RetryThrottle])
    def retry_question(self, request, pk=None):
        """Retry one failed, timed-out or errored cell: 202 with the cell, now pending."""
        return respond_once(request, lambda: self._retry_question(request))

    def _retry_question(self, request):
        form = RetryQuestionSerializer(data=request.data)
        if not form.is_valid():
            return invalid(form)
        execution = self.get_object()
        data = form.validated_data
        if (data["region"], data["question_index"]) != (execution.region,
                                                        execution.question_index):
            return problem(400, CELL_MISMATCH,
                           f"This execution is {execution.region} × question "
                           f"{execution.question_index}, not {data['region']} × question "
                           f"{data['question_index']}.",
                           region=execution.region, question_index=execution.question_index)
        try:
            cell = services.retry_cell(execution, by=request.user, channel=Channel.API,
                                       reason=data["reason"])
        except RetryRefused as refused:
            return refusal(refused)
        return Response(ExecutionSerializer(cell).data, status=status.HTTP_202_ACCEPTED)

from rest_framework import serializers

from operations.api.fields import StrictBooleanField, StrictCharField, StrictDateTimeField
from operations.errors import what_to_do
from operations.models import Attempt, Operation
from operations.services import MAX_REASON_LENGTH, max_manual_retries


class AttemptSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Attempt
        fields = ["number", "trigger", "outcome", "started_at", "finished_at", "duration_seconds",
                  "error_code", "error_message", "delay_seconds"]


class WaitingSerializer(serializers.Serializer):
    """Work that waits for an outside service that is down: no attempt is spent meanwhile,
    and it goes on by itself when the service is back."""

    dependency = serializers.CharField(help_text='The service it needs, e.g. "inference:eu-west".')
    since = serializers.DateTimeField(source="waiting_since")
    message = serializers.CharField(source="waiting_message")


def waiting_of(operation) -> dict | None:
    """A waiting operation's `waiting` object (None for any other)."""
    if operation is None or operation.status != "waiting":
        return None
    return WaitingSerializer(operation).data


class OperationSerializer(serializers.ModelSerializer):
    parent_operation_id = serializers.UUIDField(source="parent_id", read_only=True,
                                                allow_null=True)
    root_operation_id = serializers.UUIDField(source="root_id", read_only=True, allow_null=True)
    retry_count = serializers.IntegerField(source="retry_number", read_only=True)
    max_retries = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    triggered_by = serializers.CharField(source="triggered_by.username", default=None)
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = ["id", "kind", "status", "dependency", "waiting", "attempt_count",
                  "attempts_waived", "max_attempts", "next_attempt_at",
                  "progress", "error", "result", "parent_operation_id", "root_operation_id",
                  "retry_count", "max_retries", "is_retry", "retry_reason", "channel",
                  "triggered_by", "created_at", "started_at", "finished_at", "updated_at"]

    def get_max_retries(self, operation) -> int:
        return max_manual_retries()

    def get_waiting(self, operation) -> WaitingSerializer(allow_null=True):
        return waiting_of(operation)

    def get_error(self, operation) -> dict | None:
        if not operation.error_code:
            return None
        return {"code": operation.error_code, "message": operation.error_message,
                "what_to_do": what_to_do(operation.error_code),
                "reference": operation.reference}

    def get_progress(self, operation) -> dict:
        return {"done": operation.progress_done, "total": operation.progress_total,
                "percent": operation.progress_percent}


class LineageEntrySerializer(serializers.ModelSerializer):
    retry_count = serializers.IntegerField(source="retry_number")

    class Meta:
        model = Operation
        fields = ["id", "status", "retry_count", "channel", "retry_reason", "error_code",
                  "created_at", "finished_at"]


class OperationDetailSerializer(OperationSerializer):
    attempts = AttemptSerializer(many=True, read_only=True)
    lineage = serializers.SerializerMethodField()

    class Meta(OperationSerializer.Meta):
        fields = OperationSerializer.Meta.fields + ["attempts", "lineage"]

    def get_lineage(self, operation) -> list[dict]:
        return LineageEntrySerializer(operation.lineage(), many=True).data


class RetryRequestSerializer(serializers.Serializer):
    reason = StrictCharField(required=False, allow_blank=True, default="",
                             max_length=MAX_REASON_LENGTH)


class BulkRetryRequestSerializer(serializers.Serializer):
    """Which failed operations to retry, and why."""

    kind = StrictCharField(required=False, max_length=64)
    error_code = StrictCharField(required=False, max_length=64)
    failed_after = StrictDateTimeField(required=False,
                                       help_text="Only operations that failed after this.")
    dry_run = StrictBooleanField(required=False, default=False)
    reason = StrictCharField(required=False, allow_blank=True, default="",
                             max_length=MAX_REASON_LENGTH)


class BulkRetrySkippedSerializer(serializers.Serializer):
    retry_limit_reached = serializers.IntegerField()
    already_retried = serializers.IntegerField()
    input_missing = serializers.IntegerField()
    not_failed = serializers.IntegerField()


class BulkRetryReportSerializer(serializers.Serializer):
    """What a bulk retry did (or, in a dry run, would do): `eligible` plus the skipped counts
    add up to the operations considered."""

    eligible = serializers.IntegerField()
    retried = serializers.ListField(child=serializers.UUIDField(),
                                    help_text="The new operations, in the order they start.")
    skipped = BulkRetrySkippedSerializer()
    by_error = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="Failed operations considered, by error code.")
    dry_run = serializers.BooleanField()


class ProblemSerializer(serializers.Serializer):
    """The body of every error answer (RFC 9457 problem details), with a stable `code`; some
    refusals add what helps to act on them."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Stable: act on this, not on the wording.")
    detail = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Field errors (code `invalid`).")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds (throttled).")
    retry_operation_id = serializers.UUIDField(required=False,
                                               help_text="The retry that exists already.")
    current_status = serializers.CharField(required=False,
                                           help_text="What it is now (not_failed, not_cancellable).")


class ErrorSummarySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RetryHistoryEntrySerializer(serializers.Serializer):
    """One manual retry: when, who, through which channel, why, and how it went."""

    at = serializers.DateTimeField()
    by = serializers.CharField(allow_null=True)
    channel = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    outcome = serializers.CharField(help_text="The retry operation's status.")
    operation_id = serializers.UUIDField()
    retry_number = serializers.IntegerField()


class ChainAttemptSerializer(serializers.ModelSerializer):
    """One attempt of one operation of a chain."""

    operation_id = serializers.UUIDField(read_only=True)
    retry_number = serializers.IntegerField(source="operation.retry_number", read_only=True)
    started = serializers.DateTimeField(source="started_at", read_only=True)
    finished = serializers.DateTimeField(source="finished_at", read_only=True, allow_null=True)
    delay_before_next = serializers.FloatField(source="delay_seconds", read_only=True,
                                               allow_null=True)

    class Meta:
        model = Attempt
        fields = ["operation_id", "retry_number", "number", "trigger", "started", "finished",
                  "outcome", "error_code", "error_message", "delay_before_next"]


class ChainFieldsMixin(serializers.Serializer):
    """The retry fields a workload shows for a row that has a `chain` (operations.chains):
    derived from the chain, never stored on the row."""

    retry_count = serializers.IntegerField(source="chain.retry_count", read_only=True)
    max_retries = serializers.IntegerField(source="chain.max_retries", read_only=True)
    last_retry_at = serializers.DateTimeField(source="chain.last_retry_at", read_only=True,
                                              allow_null=True)
    original_error = ErrorSummarySerializer(source="chain.original_error", read_only=True,
                                            allow_null=True)


class ChainHistoryMixin(serializers.Serializer):
    """The whole history of a chain read with `chains.history_of`."""

    retry_history = RetryHistoryEntrySerializer(source="chain.retry_history", many=True,
                                                read_only=True)
    attempts = ChainAttemptSerializer(source="chain.attempts", many=True, read_only=True)

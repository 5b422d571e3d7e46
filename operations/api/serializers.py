from rest_framework import serializers

from operations.errors import what_to_do
from operations.models import Attempt, Operation
from operations.services import MAX_REASON_LENGTH, max_manual_retries


class AttemptSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Attempt
        fields = ["number", "trigger", "outcome", "started_at", "finished_at", "duration_seconds",
                  "error_code", "error_message", "delay_seconds"]


class OperationSerializer(serializers.ModelSerializer):
    parent_operation_id = serializers.UUIDField(source="parent_id", read_only=True)
    root_operation_id = serializers.UUIDField(source="root_id", read_only=True)
    retry_count = serializers.IntegerField(source="retry_number", read_only=True)
    max_retries = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    triggered_by = serializers.CharField(source="triggered_by.username", default=None)

    class Meta:
        model = Operation
        fields = ["id", "kind", "status", "attempt_count", "max_attempts", "next_attempt_at",
                  "progress", "error", "result", "parent_operation_id", "root_operation_id",
                  "retry_count", "max_retries", "is_retry", "retry_reason", "channel",
                  "triggered_by", "created_at", "started_at", "finished_at", "updated_at"]

    def get_max_retries(self, operation) -> int:
        return max_manual_retries()

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
    reason = serializers.CharField(required=False, allow_blank=True, default="",
                                   max_length=MAX_REASON_LENGTH, trim_whitespace=False)


class ProblemSerializer(serializers.Serializer):
    """The body of every error answer."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    code = serializers.CharField()
    detail = serializers.CharField()

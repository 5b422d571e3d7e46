"""What a delivery's body says: `{"type", "timestamp", "data"}` (the Standard Webhooks
shape), `data` as the event was recorded. The serializers document each type's `data` in the
API schema; `tests/test_webhooks.py` checks every recorded event against them."""
from rest_framework import serializers

from operations.events import CATALOGUE

TEST = "webhook.test"  # "Send test event": not part of the catalogue, never subscribed to
TYPES = {**CATALOGUE, TEST: "A test event, sent when you press Send test event."}


def body(event) -> dict:
    return {"type": event.type, "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": event.data}


class ErrorData(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class OperationData(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField(help_text="e.g. executions.answer, imports.full_pass")
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    retry_number = serializers.IntegerField(help_text="0 for the first run, n for the n-th "
                                                      "manual retry")
    dependency = serializers.CharField(allow_null=True)
    error = ErrorData(allow_null=True)
    root_id = serializers.UUIDField(help_text="The first operation of its retry chain")


class OperationEventData(serializers.Serializer):
    operation = OperationData()


class JobData(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="Questions by final status.")


class JobFinishedData(serializers.Serializer):
    job = JobData()


class BatchData(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()


class BatchPhaseFailedData(serializers.Serializer):
    batch = BatchData()
    phase = serializers.CharField()
    essay_id = serializers.IntegerField(allow_null=True)
    operation = OperationData()


class BatchFinishedData(serializers.Serializer):
    batch = BatchData()
    phase = serializers.CharField(help_text="The last phase the batch asked for.")
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="Items by status.")


class ImportData(serializers.Serializer):
    profile_id = serializers.IntegerField()
    sha256 = serializers.CharField()


# `import` is a Python keyword: the serializer is built with it as a field name.
FullPassData = type("FullPassData", (serializers.Serializer,), {
    "import": ImportData(), "operation": OperationData(),
    "__doc__": "The import whose full pass ended, and its operation."})


class TestData(serializers.Serializer):
    endpoint_id = serializers.UUIDField()
    message = serializers.CharField()


DATA = {
    "operation.failed": OperationEventData, "operation.recovered": OperationEventData,
    "operation.waiting": OperationEventData, "operation.resumed": OperationEventData,
    "job.finished": JobFinishedData, "batch.phase_failed": BatchPhaseFailedData,
    "batch.finished": BatchFinishedData, "import.full_pass.completed": FullPassData,
    "import.full_pass.failed": FullPassData, TEST: TestData,
}
assert set(DATA) == set(TYPES)

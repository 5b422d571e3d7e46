"""The imports API: upload an export, read the profile, retry the full pass."""
from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, throttle_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from imports.export_reader import REFUSALS as UPLOAD_REFUSALS
from imports.export_reader import ExportRejected, too_large
from imports.models import Profile
from imports.passes import accept_upload
from operations.api.idempotency import respond_once
from operations.api.problems import problem
from operations.api.schema import IDEMPOTENT, contract
from operations.api.serializers import OperationSerializer, RetryRequestSerializer
from operations.api.views import IDEMPOTENCY_KEY, RetryThrottle, api_retry
from operations.refusals import declare

NO_FILE = declare("no_file", 400, "Send the export as the multipart field 'file'.")
NO_PROFILE = declare("no_profile", 404, "Upload an export first.")


class UploadThrottle(UserRateThrottle):
    """Per-user limit on uploads (the page and the API share it); its 429 says `throttled`."""

    scope = "upload"

    def get_rate(self):
        return settings.IMPORTS["UPLOAD_THROTTLE"]

    def allow_request(self, request, view):
        # Listing imports costs nothing; only uploads count.
        return request.method != "POST" or super().allow_request(request, view)


class FullPassSerializer(serializers.Serializer):
    status = serializers.CharField(source="full_pass_status", allow_null=True)
    operation = OperationSerializer(source="full_pass", allow_null=True)


class ProfileSerializer(serializers.ModelSerializer):
    full_pass = FullPassSerializer(source="*")
    export = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = ["export", "conversation_count", "message_count", "first_conversation_at",
                  "last_conversation_at", "titles", "custom_instructions", "summary",
                  "memory_markdown", "full_pass"]

    def get_export(self, profile) -> dict | None:
        if not profile.export_key:
            return None
        return {"name": profile.export_name, "type": profile.export_type,
                "source": profile.export_source, "size": profile.export_size,
                "sha256": profile.export_sha256, "uploaded_at": profile.uploaded_at}


class ImportSerializer(serializers.Serializer):
    """One stored export and how its two passes went."""

    name = serializers.CharField(source="export_name")
    type = serializers.CharField(source="export_type")
    source = serializers.CharField(source="export_source")
    size = serializers.IntegerField(source="export_size")
    sha256 = serializers.CharField(source="export_sha256")
    uploaded_at = serializers.DateTimeField()
    conversation_count = serializers.IntegerField(allow_null=True)
    full_pass_status = serializers.CharField(allow_null=True)


@extend_schema(methods=["GET"], responses=contract({200: ImportSerializer(many=True)}))
@extend_schema(
    methods=["POST"],
    request={"multipart/form-data": inline_serializer("ExportUpload",
                                                      {"file": serializers.FileField()})},
    responses=contract({202: ProfileSerializer}, *UPLOAD_REFUSALS, NO_FILE, "throttled", body=True))
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser])
@throttle_classes([UploadThrottle])
def imports(request):
    """GET: your imports (the export you uploaded last). POST: upload a ChatGPT or Claude
    export (ZIP or conversations.json); 202 with the profile, both passes queued."""
    if request.method == "GET":
        profiles = Profile.objects.filter(user=request.user).exclude(export_key="")
        return Response(ImportSerializer([p.read_passes_first() for p in profiles],
                                         many=True).data)
    return upload_export(request)


def upload_export(request):
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORTS["MAX_UPLOAD_BYTES"] + 65536:
            raise too_large()
        file = request.FILES.get("file")
        if file is None:
            raise ExportRejected(NO_FILE, "Send the export as the multipart field 'file'.")
        profile = accept_upload(request.user, file, name=file.name)
    except ExportRejected as refused:
        return problem(refused.status, refused.code, refused.message)
    return Response(ProfileSerializer(profile).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses=contract({200: ProfileSerializer}, NO_PROFILE))
@api_view(["GET"])
def profile_detail(request):
    """Your profile: the export, the quick-pass results, the memory and the full pass."""
    profile = Profile.objects.filter(user=request.user).first()
    if profile is None:
        return problem(404, NO_PROFILE, "Upload an export first.")
    return Response(ProfileSerializer(profile.read_passes_first()).data)


@extend_schema(request=RetryRequestSerializer, parameters=[IDEMPOTENCY_KEY],
               responses=contract({202: OperationSerializer}, "invalid", "reason_too_long",
                                  "not_found", "not_failed", "already_retried", "input_missing",
                                  "retry_limit_reached", "throttled", *IDEMPOTENT, body=True))
@api_view(["POST"])
@throttle_classes([RetryThrottle])
def retry_full_pass(request):
    """Retry the failed full pass: 202 with the new operation, resuming from the checkpoint."""

    def handle():
        profile = Profile.objects.filter(user=request.user).first()
        if profile is None or profile.full_pass is None:
            return problem(404, "not_found", "There is no full pass to retry.")
        return api_retry(request, profile.full_pass.pk)

    return respond_once(request, handle)

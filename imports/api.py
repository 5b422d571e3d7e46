"""The imports API: upload an export, read the profile, retry the full pass."""
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, throttle_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from imports.export_reader import ExportRejected, too_large
from imports.models import Profile
from imports.passes import accept_upload
from operations.api.idempotency import respond_once
from operations.api.problems import problem
from operations.api.serializers import OperationSerializer, ProblemSerializer, RetryRequestSerializer
from operations.api.views import RetryThrottle, api_retry

PROBLEM = OpenApiResponse(ProblemSerializer)


class UploadThrottle(UserRateThrottle):
    """Per-user limit on uploads (the page and the API share it); its 429 says `throttled`."""

    scope = "upload"

    def get_rate(self):
        return settings.IMPORTS["UPLOAD_THROTTLE"]


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


@extend_schema(
    request=inline_serializer("ExportUpload", {"file": serializers.FileField()}),
    responses={202: ProfileSerializer, 400: PROBLEM, 413: PROBLEM})
@api_view(["POST"])
@parser_classes([MultiPartParser])
@throttle_classes([UploadThrottle])
def upload_export(request):
    """Upload a ChatGPT or Claude export (ZIP or conversations.json); 202 with the profile."""
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORTS["MAX_UPLOAD_BYTES"] + 65536:
            raise too_large()
        file = request.FILES.get("file")
        if file is None:
            raise ExportRejected("no_file", "Send the export as the multipart field 'file'.")
        profile = accept_upload(request.user, file, name=file.name)
    except ExportRejected as refused:
        return problem(refused.status, refused.code, refused.message)
    return Response(ProfileSerializer(profile).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: ProfileSerializer, 404: PROBLEM})
@api_view(["GET"])
def profile_detail(request):
    """Your profile: the export, the quick-pass results, the memory and the full pass."""
    profile = Profile.objects.filter(user=request.user).first()
    if profile is None:
        return problem(404, "no_profile", "Upload an export first.")
    return Response(ProfileSerializer(profile).data)


@extend_schema(request=RetryRequestSerializer,
               responses={202: OperationSerializer, 404: PROBLEM, 409: PROBLEM, 429: PROBLEM})
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

"""The whole API under /api/v1/, in one list."""
from django.urls import path

from imports import api as imports_api
from operations.api.urls import urlpatterns as operation_urls

urlpatterns = [
    *operation_urls,
    path("imports/", imports_api.upload_export, name="imports-upload"),
    path("imports/profile", imports_api.profile_detail, name="imports-profile"),
    path("imports/full-pass/retry", imports_api.retry_full_pass, name="imports-full-pass-retry"),
]

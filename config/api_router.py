"""The whole API under /api/v1/, in one list."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from batches.api import BatchViewSet
from executions.api import ExecutionViewSet, JobViewSet
from imports import api as imports_api
from operations.api.views import OperationViewSet
from webhooks.api import EndpointViewSet

# "/?": `POST /api/v1/operations/{id}/retry` works with or without the trailing slash.
router = DefaultRouter()
router.trailing_slash = "/?"
router.register("operations", OperationViewSet, basename="operation")
router.register("jobs", JobViewSet, basename="job")
router.register("executions", ExecutionViewSet, basename="execution")
router.register("batches", BatchViewSet, basename="batch")
router.register("webhooks", EndpointViewSet, basename="webhook")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
    path("imports/", imports_api.imports, name="imports"),
    path("imports/profile", imports_api.profile_detail, name="imports-profile"),
    path("imports/full-pass/retry", imports_api.retry_full_pass, name="imports-full-pass-retry"),
]

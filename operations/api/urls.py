from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from django.urls import path

from operations.api.views import OperationViewSet

# "/?": `POST /api/v1/operations/{id}/retry` works with or without the trailing slash.
router = DefaultRouter()
router.trailing_slash = "/?"
router.register("operations", OperationViewSet, basename="operation")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]

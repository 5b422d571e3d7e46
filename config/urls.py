"""Every route of Rebound: pages, the admin and the API."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from operations import health, prometheus
from operations.urls import notification_patterns

urlpatterns = [
    path("", include("imports.urls")),
    path("operations/", include("operations.urls")),
    path("notifications/", include(notification_patterns)),
    path("metrics", prometheus.scrape, name="metrics"),
    path("favicon.ico", RedirectView.as_view(url=static("rebound/favicon.svg"), permanent=True)),
    path("healthz", health.liveness, name="healthz"),
    path("readyz", health.readiness, name="readyz"),
    path("interviews/", include("interviews.urls")),
    path("jobs/", include("executions.urls")),
    path("batches/", include("batches.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("config.api_router", "api"), namespace="api")),
]

handler400 = "operations.views.bad_request"
handler404 = "operations.views.not_found"
handler500 = "operations.views.server_error"

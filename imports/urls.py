from django.urls import path

from imports import views

app_name = "imports"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("imports/upload", views.upload, name="upload"),
    path("imports/full-pass/retry", views.retry_full_pass, name="retry"),
    path("imports/full-pass/dismiss", views.dismiss_failure, name="dismiss"),
]

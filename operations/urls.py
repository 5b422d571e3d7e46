from django.urls import path

from operations import views

app_name = "operations"
urlpatterns = [
    path("", views.operation_list, name="list"),
    path("metrics/", views.metrics_page, name="metrics"),
    path("gates/", views.gates_page, name="gates"),
    path("gates/act", views.gate_act, name="gate-act"),
    path("<uuid:operation_id>/", views.operation_detail, name="detail"),
    path("<uuid:operation_id>/retry", views.operation_retry, name="retry"),
]

notification_patterns = ([
    path("", views.notification_list, name="list"),
    path("<int:notification_id>/read", views.notification_read, name="read"),
    path("read-all", views.notifications_read_all, name="read-all"),
], "notifications")

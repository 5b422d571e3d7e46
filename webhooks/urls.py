from django.urls import path

from webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new", views.endpoint_new, name="new"),
    path("<uuid:endpoint_id>/", views.endpoint_detail, name="endpoint"),
    path("<uuid:endpoint_id>/deliveries", views.endpoint_deliveries, name="deliveries"),
    path("<uuid:endpoint_id>/deliveries/<int:delivery_id>/resend", views.delivery_resend,
         name="resend"),
    path("<uuid:endpoint_id>/test", views.endpoint_test, name="test"),
    path("<uuid:endpoint_id>/resend-missed", views.endpoint_resend_missed,
         name="resend-missed"),
    path("<uuid:endpoint_id>/toggle", views.endpoint_toggle, name="toggle"),
    path("<uuid:endpoint_id>/rotate-secret", views.endpoint_rotate, name="rotate"),
    path("<uuid:endpoint_id>/delete", views.endpoint_delete, name="delete"),
]

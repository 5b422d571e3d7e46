from django.urls import path

from operations import views

app_name = "operations"
urlpatterns = [
    path("", views.operation_list, name="list"),
    path("<uuid:operation_id>/", views.operation_detail, name="detail"),
    path("<uuid:operation_id>/retry", views.operation_retry, name="retry"),
]

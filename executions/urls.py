from django.urls import path

from executions import views

app_name = "executions"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("new", views.job_new, name="new"),
    path("<int:job_id>/", views.job_detail, name="job"),
    path("<int:job_id>/cells", views.job_cells, name="cells"),
    path("<int:job_id>/retry-failed", views.job_retry_failed, name="retry-failed"),
    path("<int:job_id>/cells/<int:execution_id>/retry", views.cell_retry, name="cell-retry"),
    path("<int:job_id>/cells/<int:execution_id>/history", views.cell_history,
         name="cell-history"),
]

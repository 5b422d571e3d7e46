from django.urls import path

from batches import views

app_name = "batches"
urlpatterns = [
    path("", views.batch_list, name="list"),
    path("new", views.batch_new, name="new"),
    path("<int:batch_id>/", views.batch_detail, name="batch"),
    path("<int:batch_id>/run", views.batch_run, name="run"),
    path("<int:batch_id>/phases/<str:phase>/retry", views.phase_retry, name="retry-phase"),
    path("<int:batch_id>/phases/<str:phase>/history", views.item_history, name="batch-history"),
    path("<int:batch_id>/phases/<str:phase>/essays/<int:essay_id>/history", views.item_history,
         name="item-history"),
]

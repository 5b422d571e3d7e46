from django.urls import path

from interviews import views

app_name = "interviews"
urlpatterns = [
    path("", views.session_list, name="list"),
    path("<int:session_id>/", views.session_detail, name="session"),
    path("<int:session_id>/next", views.next_question, name="next"),
    path("<int:session_id>/turns/<int:turn_id>/", views.turn_detail, name="turn"),
    path("<int:session_id>/turns/<int:turn_id>/answer", views.turn_answer, name="answer"),
    path("<int:session_id>/turns/<int:turn_id>/retry/<uuid:operation_id>", views.turn_retry,
         name="retry"),
]

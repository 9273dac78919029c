from django.urls import path

from answers import views

urlpatterns = [
    path("answers/", views.answer_page, name="answer"),
    path("answers/<int:answer_id>/cite/<int:number>/", views.open_citation, name="answer-cite"),
    path("answers/<int:answer_id>/vote/", views.vote, name="answer-vote"),
]

from django.contrib import admin

from interviews.models import InterviewSession, InterviewTurn
from operations.admin import ReadOnlyInline


class TurnInline(ReadOnlyInline):
    model = InterviewTurn
    fields = ["number", "question", "answer", "feedback", "question_operation",
              "feedback_operation"]


@admin.register(InterviewSession)
class InterviewSessionAdmin(admin.ModelAdmin):
    list_display = ["topic", "owner", "region", "created_at"]
    list_filter = ["region"]
    search_fields = ["topic", "owner__username"]
    readonly_fields = ["owner", "topic", "region", "created_at"]
    inlines = [TurnInline]

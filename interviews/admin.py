from django.contrib import admin

from interviews.models import InterviewSession, InterviewTurn


class TurnInline(admin.TabularInline):
    model = InterviewTurn
    extra = 0
    can_delete = False
    fields = ["number", "question", "answer", "feedback", "question_operation",
              "feedback_operation"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(InterviewSession)
class InterviewSessionAdmin(admin.ModelAdmin):
    list_display = ["topic", "owner", "region", "created_at"]
    list_filter = ["region"]
    search_fields = ["topic", "owner__username"]
    readonly_fields = ["owner", "topic", "region", "created_at"]
    inlines = [TurnInline]

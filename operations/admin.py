from collections import Counter

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from operations.models import Attempt, Channel, Operation
from operations.services import RetryRefused, retry_operation


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ["number", "trigger", "outcome", "started_at", "finished_at", "error_code",
              "error_message", "delay_seconds", "worker"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def retry_as_admin(modeladmin, request, operations, skipped: Counter | None = None) -> None:
    """The admin's retry: each operation through the one retry service; report how many were
    retried and, by reason, how many were skipped."""
    retried, skipped = 0, skipped or Counter()
    for operation in operations:
        try:
            retry_operation(operation.pk, by=request.user, channel=Channel.ADMIN,
                            reason=f"admin action by {request.user.get_username()}", staff=True)
            retried += 1
        except RetryRefused as refused:
            skipped[refused.code.replace("_", " ")] += 1
    report(modeladmin, request, f"Retried {retried}", skipped)


def report(modeladmin, request, done: str, skipped: Counter) -> None:
    """"Retried 2; skipped 3 (2 not failed, 1 retry limit reached)." """
    total = sum(skipped.values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    modeladmin.message_user(request, f"{done}; skipped {total}" + (f" ({reasons})." if total else "."),
                            messages.WARNING if total else messages.SUCCESS)


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["reference", "kind", "status", "owner", "attempt_count", "retry_number",
                    "error_code", "channel", "created_at"]
    list_filter = ["kind", "status", "error_code", "channel", "is_retry"]
    search_fields = ["id", "owner__username", "error_code"]
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    actions = ["retry_selected", "cancel_selected"]
    readonly_fields = [f.name for f in Operation._meta.fields] + ["lineage_links"]
    list_select_related = ["owner"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Lineage")
    def lineage_links(self, operation):
        return format_html("<ol>{}</ol>", format_html_join(
            "", '<li><a href="../../{}/change/">{}</a> {} (retry {})</li>',
            ((item.pk, item.reference, item.status, item.retry_number)
             for item in operation.lineage())))

    @admin.action(description="Retry selected (failed ones only)")
    def retry_selected(self, request, queryset):
        retry_as_admin(self, request, queryset)

    @admin.action(description="Cancel selected (pending or scheduled only)")
    def cancel_selected(self, request, queryset):
        cancelled, skipped = 0, Counter()
        for operation in queryset:
            if operation.cancel():
                cancelled += 1
            else:
                skipped[f"already {operation.status}"] += 1
        report(self, request, f"Cancelled {cancelled}", skipped)

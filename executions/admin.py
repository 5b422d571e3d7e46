from collections import Counter

from django.contrib import admin
from django.db.models import OuterRef, Q, Subquery
from django.utils.html import format_html, format_html_join

from executions import grid
from executions.models import Execution, Job, Question
from operations.admin import ReadOnlyInline, confirmed, preview_bulk_retry, retry_as_admin
from operations.chains import history_of
from operations.models import Operation, Status


class QuestionInline(ReadOnlyInline):
    model = Question
    fields = ["index", "text"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "model", "region_list", "created_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["owner", "title", "model", "regions", "created_at"]
    inlines = [QuestionInline]

    @admin.display(description="Regions")
    def region_list(self, job):
        return ", ".join(job.regions)


def _latest(field):
    """The latest operation of the execution's chain (the one without a child): `field`."""
    latest = Operation.objects.filter(
        Q(pk=OuterRef("operation_id")) | Q(root_id=OuterRef("operation_id")),
        child__isnull=True)
    return Subquery(latest.values(field)[:1])


STATUS_FILTERS = {
    "pending": Q(operation__isnull=True) | Q(latest_status=Status.PENDING)
    | Q(latest_status=Status.RETRY_SCHEDULED, latest_attempts=0),
    "running": Q(latest_status=Status.PROCESSING)
    | Q(latest_status=Status.RETRY_SCHEDULED, latest_attempts__gt=0),
    "completed": Q(latest_status=Status.COMPLETED),
    "timeout": Q(latest_status=Status.FAILED, latest_code__in=grid.TIMEOUT_CODES),
    "error": Q(latest_status=Status.FAILED, latest_code__in=grid.ERROR_CODES),
    "failed": (Q(latest_status=Status.FAILED) & ~Q(latest_code__in=grid.TIMEOUT_CODES
                                                   | grid.ERROR_CODES))
    | Q(latest_status=Status.CANCELLED),
}


class UserStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(status, status) for status in grid.STATUSES]

    def queryset(self, request, queryset):
        if self.value() in STATUS_FILTERS:
            return queryset.filter(STATUS_FILTERS[self.value()])
        return queryset


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "job", "region", "question_index", "status", "retry_count",
                    "error_code"]
    list_filter = ["job", "region", UserStatusFilter]
    list_select_related = ["job"]
    readonly_fields = ["job", "region", "question_index", "operation", "history"]
    actions = ["retry_selected", "retry_all_failed"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            latest_status=_latest("status"), latest_attempts=_latest("attempt_count"),
            latest_code=_latest("error_code"), latest_retry=_latest("retry_number"),
            latest_id=_latest("id"))

    def has_add_permission(self, request):
        return False

    @admin.display(description="Status")
    def status(self, execution):
        if execution.operation_id is None:
            return "pending"
        return grid.user_status(execution.latest_status, execution.latest_attempts,
                                execution.latest_code)

    @admin.display(description="Manual retries")
    def retry_count(self, execution):
        return execution.latest_retry or 0

    @admin.display(description="Error")
    def error_code(self, execution):
        return execution.latest_code or "-"

    @admin.display(description="History (every attempt, oldest first)")
    def history(self, execution):
        if execution.operation_id is None:
            return "Not started yet."
        chain = history_of(execution.operation_id)
        return format_html("<table><tr><th>Operation</th><th>#</th><th>Trigger</th>"
                           "<th>Outcome</th><th>Error</th><th>Delay</th><th>Started</th></tr>{}"
                           "</table>", format_html_join("", (
                               '<tr><td><a href="/admin/operations/operation/{}/change/">'
                               "retry {}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                               "<td>{}</td><td>{}</td></tr>"), (
                               (a.operation_id, a.operation.retry_number, a.number, a.trigger,
                                a.outcome or "running", a.error_code or "-",
                                "-" if a.delay_seconds is None else f"{a.delay_seconds:.2f} s",
                                a.started_at) for a in chain.attempts)))

    def _failed_operations(self, queryset):
        """The operation speaking for each selected cell, and a count of cells not started."""
        executions = list(queryset)
        not_started = Counter({"not started": sum(e.operation_id is None for e in executions)})
        latest = Operation.objects.filter(pk__in=[e.latest_id for e in executions
                                                  if e.latest_id]).order_by("created_at")
        return list(latest), +not_started

    @admin.action(description="Retry selected (failed ones only)")
    def retry_selected(self, request, queryset):
        operations, skipped = self._failed_operations(queryset)
        retry_as_admin(self, request, operations, skipped)

    @admin.action(description="Retry all failed (preview first)")
    def retry_all_failed(self, request, queryset):
        operations, skipped = self._failed_operations(queryset)
        if confirmed(request):
            retry_as_admin(self, request, operations, skipped,
                           reason=request.POST.get("reason", ""))
            return None
        return preview_bulk_retry(self, request, operations, action="retry_all_failed",
                                  title="Retry all failed cells?", extra_skipped=skipped)

from collections import Counter

import re

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from operations import kinds
from operations.errors import USER_MESSAGES
from operations.models import Attempt, Channel, Notification, Operation, Status
from operations.services import MAX_REASON_LENGTH, RetryRefused, retry_failed


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent as a record: nothing added, changed or deleted here."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = ["number", "trigger", "outcome", "started_at", "finished_at", "error_code",
              "error_message", "delay_seconds", "worker"]


def retry_as_admin(modeladmin, request, operations, skipped: Counter | None = None,
                   reason: str = "") -> dict | None:
    """The admin's retry: the one bulk retry service (staggered children), then a message
    with how many were retried and, by reason, how many were skipped."""
    try:
        report = retry_failed(operations, by=request.user, channel=Channel.ADMIN, staff=True,
                              reason=reason or f"admin action by {request.user.get_username()}")
    except RetryRefused as refused:
        modeladmin.message_user(request, refused.message, messages.ERROR)
        return None
    skipped = Counter(skipped or {})
    skipped.update({code.replace("_", " "): n for code, n in report["skipped"].items() if n})
    report_message(modeladmin, request, f"Retried {len(report['retried'])}", skipped)
    return report


def report_message(modeladmin, request, done: str, skipped: Counter) -> None:
    """"Retried 2; skipped 3 (2 not failed, 1 retry limit reached)." """
    total = sum(skipped.values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    modeladmin.message_user(request, f"{done}; skipped {total}" + (f" ({reasons})." if total else "."),
                            messages.WARNING if total else messages.SUCCESS)


def preview_bulk_retry(modeladmin, request, operations, *, action: str, title: str,
                       extra_skipped: Counter | None = None):
    """The page an admin sees before a bulk retry: what would be retried, counted by kind and
    error, and what would be skipped and why. Its form posts the same action back, confirmed."""
    operations = list(operations)
    report = retry_failed(operations, by=request.user, channel=Channel.ADMIN, staff=True,
                          dry_run=True)
    by_kind = Counter((op.kind, op.error_code or "—") for op in operations
                      if op.status == Status.FAILED)
    skipped = Counter(extra_skipped or {})
    skipped.update({code.replace("_", " "): n for code, n in report["skipped"].items() if n})
    return TemplateResponse(request, "admin/operations/bulk_retry_preview.html", {
        **modeladmin.admin_site.each_context(request),
        "title": title, "opts": modeladmin.model._meta, "action": action,
        "report": report, "by_kind": sorted(by_kind.items()), "skipped": skipped.most_common(),
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "max_reason": MAX_REASON_LENGTH,
    })


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def confirmed(request) -> bool:
    return request.POST.get("confirm") == "yes"


class EstimatedCountPaginator(Paginator):
    """Counting every row of a history of millions takes seconds on PostgreSQL: an unfiltered
    list shows the planner's estimate of the table's size instead (kept by autovacuum)."""

    @cached_property
    def count(self):
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                               [query.model._meta.db_table])
                estimate = cursor.fetchone()[0]
            if estimate > 10_000:
                return estimate
        return super().count


class KindFilter(admin.SimpleListFilter):
    """The registered kinds (not a DISTINCT over the whole history)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(name, kinds.find(name).title) for name in kinds.names()]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


class ErrorCodeFilter(admin.SimpleListFilter):
    """The engine's known error codes."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        return [(code, code.replace("_", " ")) for code in sorted(USER_MESSAGES)]

    def queryset(self, request, queryset):
        return queryset.filter(error_code=self.value()) if self.value() else queryset


UUID_PREFIX = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){0,3}(-[0-9a-f]{0,12})?", re.IGNORECASE)


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["reference", "kind", "status", "owner", "attempt_count", "retry_number",
                    "error_code", "channel", "created_at"]
    # Each filter and the search use an index: at millions of rows, nothing scans the table.
    list_filter = ["status", KindFilter, ErrorCodeFilter, "channel", "is_retry"]
    search_fields = ["id", "owner__username"]
    search_help_text = "An operation's id (or its first 8 characters), or an owner's username."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    inlines = [AttemptInline]
    actions = ["retry_selected", "retry_all_failed", "cancel_selected"]
    readonly_fields = [f.name for f in Operation._meta.fields] + ["lineage_links"]
    list_select_related = ["owner"]

    def has_add_permission(self, request):
        return False

    def get_search_results(self, request, queryset, search_term):
        """An id or its reference (a prefix of it: a range of the primary key), or an exact
        username; never a LIKE over every row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if UUID_PREFIX.fullmatch(term):
            digits = term.replace("-", "").lower()
            low, high = digits.ljust(32, "0"), digits.ljust(32, "f")
            return queryset.filter(id__gte=_uuid(low), id__lte=_uuid(high)), False
        return queryset.filter(owner__username=term), False

    @admin.display(description="Lineage")
    def lineage_links(self, operation):
        return format_html("<ol>{}</ol>", format_html_join(
            "", '<li><a href="../../{}/change/">{}</a> {} (retry {})</li>',
            ((item.pk, item.reference, item.status, item.retry_number)
             for item in operation.lineage())))

    @admin.action(description="Retry selected (failed ones only)")
    def retry_selected(self, request, queryset):
        retry_as_admin(self, request, queryset.order_by("created_at"))

    @admin.action(description="Retry all failed (preview first)")
    def retry_all_failed(self, request, queryset):
        operations = queryset.order_by("created_at")
        if confirmed(request):
            retry_as_admin(self, request, operations, reason=request.POST.get("reason", ""))
            return None
        return preview_bulk_retry(self, request, operations, action="retry_all_failed",
                                  title="Retry all failed operations?")

    @admin.action(description="Cancel selected (pending or scheduled only)")
    def cancel_selected(self, request, queryset):
        cancelled, skipped = 0, Counter()
        for operation in queryset:
            if operation.cancel():
                cancelled += 1
            else:
                skipped[f"already {operation.status}"] += 1
        report_message(self, request, f"Cancelled {cancelled}", skipped)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "owner", "event", "kind", "message", "read_at", "emailed_at"]
    list_filter = ["event", "kind"]
    search_fields = ["owner__username", "message"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False

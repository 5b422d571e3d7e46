from collections import Counter

from django.contrib import admin

from imports.models import MemoryFact, Profile
from operations.admin import report
from operations.models import Channel
from operations.services import RetryRefused, retry_operation


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "export_name", "export_size", "conversation_count", "full_pass_state",
                    "uploaded_at"]
    search_fields = ["user__username", "export_sha256"]
    readonly_fields = [f.name for f in Profile._meta.fields]
    actions = ["retry_failed_full_pass"]

    @admin.display(description="Full pass")
    def full_pass_state(self, profile):
        return profile.full_pass_status or "-"

    @admin.action(description="Retry failed full pass")
    def retry_failed_full_pass(self, request, queryset):
        retried, skipped = 0, Counter()
        for profile in queryset:
            operation = profile.full_pass
            if operation is None:
                skipped["no full pass"] += 1
                continue
            try:
                retry_operation(operation.pk, by=request.user, channel=Channel.ADMIN,
                                reason=f"admin action by {request.user.get_username()}",
                                staff=True)
                retried += 1
            except RetryRefused as refused:
                skipped[refused.code.replace("_", " ")] += 1
        report(self, request, f"Retried {retried}", skipped)


@admin.register(MemoryFact)
class MemoryFactAdmin(admin.ModelAdmin):
    list_display = ["profile", "category", "text", "conversation_title"]
    list_filter = ["category"]
    search_fields = ["text", "conversation_title"]

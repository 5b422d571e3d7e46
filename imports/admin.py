from collections import Counter

from django.contrib import admin

from imports.models import MemoryFact, Profile
from operations.admin import retry_as_admin


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
        full_passes = [profile.full_pass for profile in queryset]
        skipped = Counter({"no full pass": full_passes.count(None)} if None in full_passes else {})
        retry_as_admin(self, request, [op for op in full_passes if op is not None], skipped)


@admin.register(MemoryFact)
class MemoryFactAdmin(admin.ModelAdmin):
    list_display = ["profile", "category", "text", "conversation_title"]
    list_filter = ["category"]
    search_fields = ["text", "conversation_title"]

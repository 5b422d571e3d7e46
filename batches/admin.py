from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from batches import pipeline
from batches.models import Batch, Essay, PhaseOutput
from operations.admin import ReadOnlyInline
from operations.models import Channel
from operations.services import MAX_REASON_LENGTH, RetryRefused


class EssayInline(ReadOnlyInline):
    model = Essay
    fields = ["index", "text"]


class PhaseRetryForm(forms.Form):
    phase = forms.ChoiceField(choices=[(p, p) for p in pipeline.PHASES])
    reason = forms.CharField(max_length=MAX_REASON_LENGTH, required=False,
                             widget=forms.Textarea(attrs={"rows": 2}))


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "region", "requested_phase", "created_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["owner", "title", "region", "requested_phase", "created_at",
                       "phase_status"]
    inlines = [EssayInline]
    actions = ["retry_failed_phase_items"]

    @admin.display(description="Phases (items by status)")
    def phase_status(self, batch):
        state = pipeline.read(batch)
        lines = []
        for phase in pipeline.PHASES:
            items = ([state.item(phase)] if phase == pipeline.BATCH_ONLY
                     else [state.item(phase, essay) for essay in state.essays])
            counts = {}
            for item in items:
                counts[item.status_label] = counts.get(item.status_label, 0) + 1
            lines.append(f"{phase}: " + ", ".join(f"{n} {label.lower()}"
                                                  for label, n in counts.items()))
        return "; ".join(lines)

    @admin.action(description="Retry failed phase items (choose the phase, give a reason)")
    def retry_failed_phase_items(self, request, queryset):
        form = PhaseRetryForm(request.POST if "phase" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(request, "admin/batches/retry_phase.html", {
                **self.admin_site.each_context(request), "title": "Retry failed phase items",
                "opts": self.model._meta, "form": form, "batches": queryset,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)})
        retried, skipped = 0, {}
        for batch in queryset:
            try:
                report = pipeline.retry_phase(batch, form.cleaned_data["phase"], by=request.user,
                                              channel=Channel.ADMIN, staff=True,
                                              reason=form.cleaned_data["reason"])
            except RetryRefused as refused:
                skipped[refused.code] = skipped.get(refused.code, 0) + 1
                continue
            retried += len(report["retried"])
            for code, n in report["skipped"].items():
                if n:
                    skipped[f"item {code}"] = skipped.get(f"item {code}", 0) + n
        total = sum(skipped.values())
        reasons = ", ".join(f"{n} {code.replace('_', ' ')}" for code, n in skipped.items())
        self.message_user(request, f"Retried {retried} item{'s' if retried != 1 else ''}; "
                                   f"skipped {total}" + (f" ({reasons})." if total else "."),
                          messages.WARNING if total else messages.SUCCESS)
        return None


@admin.register(PhaseOutput)
class PhaseOutputAdmin(admin.ModelAdmin):
    list_display = ["batch", "phase", "essay", "operation", "created_at"]
    list_filter = ["phase"]
    readonly_fields = ["batch", "phase", "essay", "operation", "output", "created_at"]

    def has_add_permission(self, request):
        return False

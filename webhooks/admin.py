"""Staff see every endpoint and delivery: resend failed deliveries (the one retry path, with
its limits), send a test event, turn endpoints off or on. Secrets are never shown."""
from collections import Counter

from django.contrib import admin

from operations.admin import EstimatedCountPaginator, report_message
from operations.models import Channel
from operations.services import RetryRefused
from webhooks import services
from webhooks.api import status_of
from webhooks.models import Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "owner", "enabled", "failing_since", "disabled_reason", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "owner__username"]
    fields = ["owner", "url", "description", "event_types", "enabled", "disabled_reason",
              "disabled_at", "failing_since", "previous_secret_until", "created_at"]
    readonly_fields = ["owner", "disabled_reason", "disabled_at", "failing_since",
                       "previous_secret_until", "created_at"]
    actions = ["send_test_event", "turn_off", "turn_on", "resend_missed"]

    def has_add_permission(self, request):
        return False  # an endpoint is its owner's: they add it (and get its secret)

    @admin.action(description="Send a test event")
    def send_test_event(self, request, queryset):
        sent, skipped = 0, Counter()
        for endpoint in queryset:
            try:
                services.send_test(endpoint)
                sent += 1
            except RetryRefused as refused:
                skipped[refused.code.replace("_", " ")] += 1
        report_message(self, request, f"Sent {sent} test event{'s' if sent != 1 else ''}",
                       skipped)

    @admin.action(description="Turn off")
    def turn_off(self, request, queryset):
        self._switch(request, queryset, on=False)

    @admin.action(description="Turn on")
    def turn_on(self, request, queryset):
        self._switch(request, queryset, on=True)

    def _switch(self, request, queryset, *, on: bool):
        state = "on" if on else "off"
        changed = list(queryset.filter(enabled=not on))
        for endpoint in changed:
            services.update_endpoint(endpoint, enabled=on)
        report_message(self, request, f"Turned {state} {len(changed)}",
                       +Counter({f"already {state}": queryset.count() - len(changed)}))

    @admin.action(description="Resend what they missed (failed deliveries)")
    def resend_missed(self, request, queryset):
        retried, skipped = 0, Counter()
        for endpoint in queryset:
            try:
                report = services.resend_missed(endpoint, by=request.user,
                                                channel=Channel.ADMIN, staff=True)
            except RetryRefused as refused:
                skipped[refused.code.replace("_", " ")] += 1
                continue
            retried += len(report["retried"])
            skipped.update({k.replace("_", " "): n for k, n in report["skipped"].items() if n})
        report_message(self, request, f"Resent {retried}", skipped)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["event_type", "endpoint", "state", "response_status", "response_ms",
                    "attempted_at", "created_at"]
    list_select_related = ["event", "endpoint"]
    list_filter = ["response_status"]
    search_fields = ["endpoint__url", "event__type"]
    readonly_fields = ["event", "endpoint", "operation", "response_status", "response_body",
                       "response_ms", "attempted_at", "delivered_at", "created_at"]
    actions = ["resend"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        services.with_chains(changelist.result_list)
        return changelist

    @admin.display(description="Event")
    def event_type(self, delivery):
        return delivery.event.type

    @admin.display(description="Status")
    def state(self, delivery):
        chain = getattr(delivery, "chain", None)
        return status_of(chain.latest if chain else services.latest_operation(delivery))

    @admin.action(description="Resend (failed deliveries only)")
    def resend(self, request, queryset):
        resent, skipped = 0, Counter()
        for delivery in queryset.select_related("endpoint"):
            try:
                services.resend(delivery, by=request.user, channel=Channel.ADMIN, staff=True,
                                reason="resent from the admin")
                resent += 1
            except RetryRefused as refused:
                skipped[refused.code.replace("_", " ")] += 1
        report_message(self, request, f"Resent {resent}", skipped)

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from operations import dependencies, events
        from webhooks import checks, kinds, metrics, retention, services  # noqa: F401

        events.listen(services.fan_out)
        dependencies.register_label("webhook:", services.dependency_label)

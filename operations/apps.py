from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from operations import checks, diagnostics  # noqa: F401  (register checks and kinds)

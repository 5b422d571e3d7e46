from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    verbose_name = "Executions (multi-region jobs)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from executions import demo, kinds, retention  # noqa: F401  (they register)
        from operations import demo as demo_data

        demo_data.register(demo.seed)

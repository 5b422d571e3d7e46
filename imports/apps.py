from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from imports import demo, passes  # noqa: F401  (passes registers the pass kinds)
        from operations import demo as demo_data

        demo_data.register(demo.seed)

from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batch pipelines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from batches import demo, phases, retention  # noqa: F401  (they register)
        from operations import demo as demo_data

        demo_data.register(demo.seed)

from django.apps import AppConfig


class InterviewsConfig(AppConfig):
    name = "interviews"
    verbose_name = "Interview practice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from interviews import demo, kinds  # noqa: F401  (kinds registers the AI kinds)
        from operations import demo as demo_data

        demo_data.register(demo.seed)

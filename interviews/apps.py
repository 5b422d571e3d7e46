from django.apps import AppConfig


class InterviewsConfig(AppConfig):
    name = "interviews"
    verbose_name = "Interview practice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from interviews import demo, kinds, retention  # noqa: F401  (they register)
        from operations import demo as demo_data

        demo_data.register(demo.seed)

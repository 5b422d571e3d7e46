from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """The AI provider as the workloads use it: the client (`inference.client`) and the local
    OpenAI-compatible service with fault injection (`manage.py inference_service`). Not part
    of the engine, which knows its calls only as the dependency `inference:<region>`."""

    name = "inference"
    verbose_name = "AI provider"

    def ready(self):
        from inference import client  # noqa: F401  (names its dependencies for the pages)

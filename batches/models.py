"""Batches of essays through ordered phases. A phase's state per essay is derived from the
engine's chain for (batch, phase, essay) — found by the dedupe key of its first operation —
never copied here; a PhaseOutput exists exactly when that chain completed."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse


class Batch(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="batches")
    title = models.CharField(max_length=200)
    region = models.CharField(max_length=40, blank=True)
    # How far the owner asked the pipeline to go (the last phase requested); phases start up
    # to it as the ones before finish.
    requested_phase = models.CharField(max_length=20, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"

    def __str__(self):
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("batches:batch", args=[self.pk])


class Essay(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="essays")
    index = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"],
                                               name="one_essay_per_index")]

    def __str__(self):
        return f"essay {self.index + 1} of {self.batch}"

    @property
    def label(self) -> str:
        return f"Essay {self.index + 1}"


class PhaseOutput(models.Model):
    """What a phase produced for an essay (or, batch-only, for the batch), written in the
    transaction of its operation's fenced completion: once, whatever is redelivered."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="outputs")
    phase = models.CharField(max_length=20)
    essay = models.ForeignKey(Essay, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="outputs")
    operation = models.OneToOneField("operations.Operation", on_delete=models.PROTECT,
                                     related_name="phase_output")
    output = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["batch", "phase", "essay"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "phase", "essay"],
                                    name="one_output_per_essay_phase"),
            # NULLs are distinct in a unique index: the batch-only phase needs its own.
            models.UniqueConstraint(fields=["batch", "phase"], condition=Q(essay__isnull=True),
                                    name="one_output_per_batch_phase"),
        ]

    def __str__(self):
        return f"{self.phase} of {self.essay or self.batch}"

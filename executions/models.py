"""Jobs: questions asked of one model in several regions. One Execution per (region, question)
cell points at the FIRST operation of its retry chain; everything about its state and retries
is derived from that chain (operations.chains), never copied here."""
from django.conf import settings
from django.db import models
from django.urls import reverse


class Job(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="jobs")
    title = models.CharField(max_length=200)
    model = models.CharField(max_length=100)
    regions = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("executions:job", args=[self.pk])


class Question(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="questions")
    index = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"],
                                               name="one_question_per_index")]

    def __str__(self):
        return f"Q{self.index + 1}: {self.text[:60]}"


class Execution(models.Model):
    """One cell of a job's region × question grid."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="executions")
    region = models.CharField(max_length=40)
    question_index = models.PositiveIntegerField()
    # The first operation of the cell's chain; empty until the cell gets a slot to start.
    operation = models.OneToOneField("operations.Operation", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="execution")

    class Meta:
        ordering = ["job", "question_index", "region"]
        constraints = [models.UniqueConstraint(fields=["job", "region", "question_index"],
                                               name="one_execution_per_cell")]

    def __str__(self):
        return f"{self.region} × Q{self.question_index + 1} of job {self.job_id}"

    @property
    def dom_id(self) -> str:
        return f"cell-{self.pk}"

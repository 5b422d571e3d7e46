"""Interview practice: a session on a topic, turns of question -> answer -> feedback.

A turn holds the first operation of its question and of its feedback; the page follows each
retry chain to the operation that speaks for it now.
"""
from django.conf import settings
from django.db import models
from django.urls import reverse


class InterviewSession(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="interview_sessions")
    topic = models.CharField(max_length=200)
    region = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.topic} ({self.owner})"

    def get_absolute_url(self) -> str:
        return reverse("interviews:session", args=[self.pk])


class InterviewTurn(models.Model):
    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE, related_name="turns")
    number = models.PositiveSmallIntegerField()
    question = models.TextField(blank=True)
    question_operation = models.ForeignKey("operations.Operation", null=True,
                                           on_delete=models.SET_NULL, related_name="+")
    answer = models.TextField(blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    feedback = models.TextField(blank=True)
    feedback_operation = models.ForeignKey("operations.Operation", null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["session", "number"]
        constraints = [models.UniqueConstraint(fields=["session", "number"], name="one_turn_per_number")]

    def __str__(self):
        return f"question {self.number} of {self.session}"

    @property
    def dom_id(self) -> str:
        return f"turn-{self.pk}"

    @property
    def question_failed_heading(self) -> str:
        return f"Question {self.number} could not be written"

    @property
    def feedback_failed_heading(self) -> str:
        return f"Feedback on question {self.number} could not be written"

    @property
    def busy(self) -> bool:
        """Is a question or feedback still being made (so the page should poll)?"""
        return any(op is not None and not op.is_terminal
                   for op in (self.question_current, self.feedback_current))

    @property
    def question_current(self):
        return self.question_operation.latest_in_chain() if self.question_operation else None

    @property
    def feedback_current(self):
        return self.feedback_operation.latest_in_chain() if self.feedback_operation else None

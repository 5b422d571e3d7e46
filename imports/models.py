"""A person's profile: the stored export, what the quick pass found, and the memory the full
pass built. The full pass's status is derived from its current operation, never stored twice."""
from django.conf import settings
from django.db import models

from operations.models import Status

FULL_PASS_STATUS = {
    Status.PENDING: "pending", Status.RETRY_SCHEDULED: "processing",
    Status.PROCESSING: "processing", Status.COMPLETED: "complete", Status.FAILED: "failed",
    Status.CANCELLED: "failed", Status.WAITING: "waiting",
}


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="profile")
    # The stored export: a private storage key and its fingerprint, never the bytes.
    export_key = models.CharField(max_length=200, blank=True)
    export_member = models.CharField(max_length=500, blank=True)
    export_type = models.CharField(max_length=8, blank=True)  # zip | json
    export_source = models.CharField(max_length=12, blank=True)  # chatgpt | claude
    export_size = models.BigIntegerField(null=True, blank=True)
    export_sha256 = models.CharField(max_length=64, blank=True)
    export_name = models.CharField(max_length=255, blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    # The quick pass.
    conversation_count = models.PositiveIntegerField(null=True, blank=True)
    message_count = models.PositiveIntegerField(null=True, blank=True)
    first_conversation_at = models.DateTimeField(null=True, blank=True)
    last_conversation_at = models.DateTimeField(null=True, blank=True)
    titles = models.JSONField(default=list, blank=True)
    custom_instructions = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    # The full pass.
    memory_markdown = models.TextField(blank=True)
    quick_pass_operation = models.ForeignKey("operations.Operation", null=True, blank=True,
                                             on_delete=models.SET_NULL, related_name="+")
    full_pass_operation = models.ForeignKey("operations.Operation", null=True, blank=True,
                                            on_delete=models.SET_NULL, related_name="+")

    # What the passes write into the profile, before their final status.
    RESULT_FIELDS = ["conversation_count", "message_count", "first_conversation_at",
                     "last_conversation_at", "titles", "custom_instructions", "summary",
                     "memory_markdown"]
    _pinned: dict | None = None  # the passes, as `read_passes_first` saw them

    def __str__(self):
        return f"profile of {self.user}"

    @property
    def quick_pass(self):
        """The operation that speaks for the quick pass now (the newest retry in its chain)."""
        return self._pinned.get("quick") if self._pinned else _latest(self.quick_pass_operation)

    @property
    def full_pass(self):
        """The operation that speaks for the full pass now (the newest retry in its chain)."""
        return self._pinned.get("full") if self._pinned else _latest(self.full_pass_operation)

    def read_passes_first(self) -> "Profile":
        """For a page or an answer that shows the passes with their results: read the passes'
        operations now and keep them, then re-read what the passes wrote. A pass writes its
        results before its final status, so one seen finished has them seen too (one seen
        running is polled again); read the other way round, a pass that finished in between
        would show as done with its results missing, and nothing would poll for them."""
        self._pinned = None
        self._pinned = {"quick": self.quick_pass, "full": self.full_pass}
        self.refresh_from_db(fields=self.RESULT_FIELDS)
        return self

    @property
    def full_pass_status(self) -> str | None:
        """pending / processing / complete / failed, as users and the API see it. A retry
        waiting for its worker is already processing: it resumes where the pass stopped."""
        operation = self.full_pass
        if operation is None:
            return None
        if operation.status == Status.PENDING and operation.is_retry:
            return "processing"
        return FULL_PASS_STATUS[operation.status]


def _latest(operation):
    return operation.latest_in_chain() if operation is not None else None


class MemoryFact(models.Model):
    """One durable fact, with the first conversation that stated it. Written once per export,
    however often the full pass is retried or resumed."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="facts")
    export_sha256 = models.CharField(max_length=64)
    category = models.CharField(max_length=20)
    text = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=32)
    conversation_id = models.CharField(max_length=100)
    conversation_title = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["profile", "export_sha256", "fingerprint"],
                                               name="one_row_per_fact")]

"""The engine's rows: Operation (one unit of background work) and Attempt (one try of it).

Only the methods below write `Operation.status`. Each is one conditional UPDATE whose row count
says whether this caller won; the Attempt row changes in the same transaction.
"""
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.urls import reverse

from operations import kinds


class Status(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRY_SCHEDULED = "retry_scheduled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
CANCELLABLE = (Status.PENDING, Status.RETRY_SCHEDULED)


class Channel(models.TextChoices):
    AUTO = "auto"
    WEB = "web"
    API = "api"
    ADMIN = "admin"


class Trigger(models.TextChoices):
    FIRST = "first"
    AUTO = "auto"
    MANUAL = "manual"
    RECOVERED = "recovered"


class Outcome(models.TextChoices):
    SUCCEEDED = "succeeded"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"


def lease_seconds() -> float:
    return settings.REBOUND["LEASE_SECONDS"]


def db_now_plus(seconds: float):
    """A database-clock timestamp `seconds` from now: workers' clocks never decide."""
    return models.ExpressionWrapper(Now() + timedelta(seconds=seconds),
                                    output_field=models.DateTimeField())


# The order in which pending operations are taken from the queue: work already begun first
# (by when it began), then work never started (by when it was queued). Operations a lost host
# or a backoff interrupted thus run again at once, not behind a backlog of new work.
QUEUE_ORDER = [F("started_at").asc(nulls_last=True), "enqueued_at"]


class Operation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64, db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="operations")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)

    input = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    checkpoint = models.JSONField(null=True, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    error_detail = models.TextField(blank=True)

    attempt_count = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    next_trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.FIRST)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_holder = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A workload's name for "this step of this item": submitting the same key again returns
    # the operation that exists (two racing completions start the next step once).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    # Set in the same UPDATE as a final status that has follow-ups (continuations,
    # notifications); cleared in the transaction that runs them, so they run once.
    followup_due = models.BooleanField(default=False)

    # Lineage: a manual retry is a new operation; the unique parent link allows one child.
    parent = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="child")
    root = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="descendants")
    retry_number = models.PositiveSmallIntegerField(default=0)
    is_retry = models.BooleanField(default=False)
    triggered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.AUTO)
    retry_reason = models.CharField(max_length=500, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["status", "lease_expires_at"]),
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["kind", "created_at"]),
            models.Index(fields=["updated_at"], condition=models.Q(followup_due=True),
                         name="operation_followup_due"),
            # The queue a draining worker takes from: pending, in QUEUE_ORDER.
            models.Index(fields=["started_at", "enqueued_at"],
                         condition=models.Q(status="pending"), name="operation_pending"),
        ]

    def __str__(self):
        return f"{self.kind} {self.id} ({self.status})"

    # --- reading ---------------------------------------------------------------------------

    def get_absolute_url(self) -> str:
        return reverse("operations:detail", args=[self.pk])

    @property
    def kind_spec(self) -> kinds.Kind:
        return kinds.find(self.kind)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def reference(self) -> str:
        """The short id users quote to support."""
        return str(self.id)[:8]

    @property
    def progress_percent(self) -> int | None:
        if not self.progress_total:
            return None
        return min(100, round(100 * self.progress_done / self.progress_total))

    def lineage(self) -> list["Operation"]:
        """Original first, then each manual retry in order (a chain: one child per parent)."""
        root_id = self.root_id or self.pk
        return list(Operation.objects.filter(models.Q(pk=root_id) | models.Q(root_id=root_id))
                    .select_related("triggered_by").order_by("retry_number"))

    def latest_in_chain(self) -> "Operation":
        """This operation, or its newest manual retry: the one that speaks for the work now."""
        newest = Operation.objects.filter(root_id=self.root_id or self.pk,
                                          retry_number__gt=self.retry_number)
        return newest.order_by("-retry_number").first() or self

    def _this(self):
        return Operation.objects.filter(pk=self.pk)

    # --- status changes ---------------------------------------------------------------------

    def claim(self, holder: str) -> "Attempt | None":
        """pending -> processing with a fresh lease; records the Attempt. None: lost the race."""
        token = uuid.uuid4()
        with transaction.atomic():
            # Matching the attempt count we loaded lets us know the new one without reading
            # the row back: nothing else changes it while the row stays pending.
            won = self._this().filter(status=Status.PENDING,
                                      attempt_count=self.attempt_count).update(
                status=Status.PROCESSING, lease_token=token, lease_holder=holder,
                lease_expires_at=db_now_plus(lease_seconds()),
                attempt_count=F("attempt_count") + 1, next_attempt_at=None,
                started_at=Coalesce("started_at", Now()), updated_at=Now(),
                # The previous attempt's error belongs to that attempt (its Attempt row keeps
                # it); the operation is running again and no longer shows it.
                error_code="", error_message="", error_detail="")
            if not won:
                # Another delivery claimed it first, it was cancelled, or our copy is stale.
                return None
            self.status, self.lease_token, self.lease_holder = Status.PROCESSING, token, holder
            self.attempt_count += 1
            return Attempt.objects.create(operation=self, number=self.attempt_count,
                                          trigger=self.next_trigger, worker=holder,
                                          started_at=Now())

    @classmethod
    def claim_next(cls, holder: str, pk=None) -> "Operation | None":
        """Claim operation `pk` (a delivery) or, without one, the first pending operation in
        QUEUE_ORDER (a worker draining the queue), and record its Attempt. None: nothing to claim, or another
        claim won. (`fastpath.claim_next` does the same in one statement on PostgreSQL.)"""
        candidates = cls.objects.filter(status=Status.PENDING)
        operation = (candidates.filter(pk=pk) if pk is not None
                     else candidates.order_by(*QUEUE_ORDER)).first()
        if operation is None or operation.claim(holder) is None:
            return None
        return operation

    def heartbeat(self, token, *, done=None, total=None, checkpoint=None) -> bool:
        """Extend the lease and save progress/checkpoint. False: the lease is no longer ours."""
        fields = {"lease_expires_at": db_now_plus(lease_seconds()), "updated_at": Now()}
        if done is not None:
            fields["progress_done"] = done
        if total is not None:
            fields["progress_total"] = total
        if checkpoint is not None:
            fields["checkpoint"] = checkpoint
        return self._this().filter(status=Status.PROCESSING, lease_token=token).update(**fields) == 1

    def complete(self, token, attempt_number: int, result, also=None) -> bool:
        """processing -> completed. False: a zombie's late write, ignored. `also()` runs in the
        same transaction once the fenced write won: a workload's output exists exactly when
        its operation completed."""
        return self._finish(token, attempt_number, Outcome.SUCCEEDED, also=also,
                            status=Status.COMPLETED, result=result, error_code="",
                            error_message="", error_detail="", finished_at=Now(),
                            followup_due=self.has_followups(Status.COMPLETED))

    def schedule_retry(self, token, attempt_number: int, error, delay: float,
                       outcome=Outcome.TRANSIENT) -> bool:
        """processing -> retry_scheduled, due `delay` seconds from now (database clock)."""
        return self._finish(token, attempt_number, outcome, error=error, delay=delay,
                            status=Status.RETRY_SCHEDULED, next_attempt_at=db_now_plus(delay),
                            next_trigger=Trigger.AUTO, **_error_fields(error))

    def fail(self, token, attempt_number: int, error, outcome=Outcome.PERMANENT) -> bool:
        """processing -> failed: permanent error or automatic budget spent."""
        return self._finish(token, attempt_number, outcome, error=error, status=Status.FAILED,
                            finished_at=Now(), followup_due=True, **_error_fields(error))

    def has_followups(self, status) -> bool:
        """Does reaching `status` call for follow-ups? Every final failure does (the owner is
        told); a success does when its kind continues or it ends a manual retry (recovered)."""
        if status == Status.FAILED:
            return True
        return self.kind_spec.on_success is not None or self.retry_number > 0

    def _finish(self, token, attempt_number, outcome, *, error=None, delay=None, also=None,
                **fields):
        with transaction.atomic():
            won = self._this().filter(status=Status.PROCESSING, lease_token=token).update(
                lease_token=None, lease_holder="", lease_expires_at=None, updated_at=Now(),
                **fields)
            if not won:
                # The lease was taken over (this worker was presumed dead): change nothing.
                return False
            Attempt.objects.filter(operation=self, number=attempt_number,
                                   outcome__isnull=True).update(
                outcome=outcome, finished_at=Now(), delay_seconds=delay,
                error_code=error.code if error else "",
                error_message=error.message if error else "",
                error_detail=error.detail if error else "")
            if also is not None:
                also()
        return True

    def recover(self, token, *, timed_out: bool = False) -> bool:
        """processing with a dead holder or an expired lease -> retry_scheduled (due now) or
        failed when the crash or attempt budget is spent. The lost attempt is recorded."""
        from operations.errors import Classified, user_message

        policy = self.kind_spec.policy
        outcome = Outcome.TIMED_OUT if timed_out else Outcome.CRASHED
        crashes = self.attempts.filter(outcome=Outcome.CRASHED).count() + (not timed_out)
        if not timed_out and crashes >= policy.max_crashes:
            code, status = "crashed_repeatedly", Status.FAILED
        elif not policy.allows_another(self.attempt_count):
            code, status = ("timed_out" if timed_out else "worker_lost"), Status.FAILED
        else:
            code, status = ("timed_out" if timed_out else "worker_lost"), Status.RETRY_SCHEDULED
        error = Classified(status != Status.FAILED, code, user_message(code),
                           f"lease held by {self.lease_holder or '?'} lost")
        fields = dict(status=status, **_error_fields(error))
        if status == Status.FAILED:
            fields.update(finished_at=Now(), followup_due=True)
        else:
            fields.update(next_attempt_at=Now(), next_trigger=Trigger.RECOVERED)
        return self._finish(token, self.attempt_count, outcome, error=error,
                            delay=0.0 if status != Status.FAILED else None, **fields)

    def release(self, token, attempt_number: int) -> bool:
        """processing -> retry_scheduled, due now: the worker is shutting down. Not a crash and
        not a failure, so no budget is spent on it; the next attempt continues the work."""
        from operations.errors import Classified, user_message

        error = Classified(True, "worker_stopped", user_message("worker_stopped"),
                           f"{self.lease_holder or 'worker'} stopping (SIGTERM)")
        return self._finish(token, attempt_number, Outcome.TRANSIENT, error=error, delay=0.0,
                            status=Status.RETRY_SCHEDULED, next_attempt_at=Now(),
                            next_trigger=Trigger.RECOVERED, **_error_fields(error))

    def release_if_due(self) -> bool:
        """retry_scheduled -> pending once its time has come (database clock); the winner
        among several dispatchers enqueues it."""
        return self._this().filter(status=Status.RETRY_SCHEDULED,
                                   next_attempt_at__lte=Now()).update(
            status=Status.PENDING, enqueued_at=Now(), updated_at=Now()) == 1

    def mark_redelivered(self, older_than: float) -> bool:
        """A pending row whose delivery seems lost: bump `enqueued_at`; the winner re-enqueues."""
        return self._this().filter(status=Status.PENDING,
                                   enqueued_at__lt=db_now_plus(-older_than)).update(
            enqueued_at=Now()) == 1

    def cancel(self) -> bool:
        """pending | retry_scheduled -> cancelled. False: already running or finished."""
        won = self._this().filter(status__in=CANCELLABLE).update(
            status=Status.CANCELLED, next_attempt_at=None, finished_at=Now(), updated_at=Now())
        if won:
            self.refresh_from_db()
        return won == 1


def _error_fields(error) -> dict:
    return {"error_code": error.code, "error_message": error.message[:500],
            "error_detail": error.detail}


class Attempt(models.Model):
    """One try of an operation. Append-only: a row is created at claim and closed once."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    error_detail = models.TextField(blank=True)
    delay_seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["operation", "number"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "number"], name="one_attempt_per_number"),
        ]

    def __str__(self):
        return f"attempt {self.number} of {self.operation_id}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class IdempotencyRecord(models.Model):
    """The first answer to an API call made with an Idempotency-Key, replayed on repeats."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_answer_per_key")]


class Notification(models.Model):
    """Something the owner of an operation is told: it failed for good, or a retried chain
    recovered. Shown in the app at once; emailed in throttled digests."""

    class Event(models.TextChoices):
        FAILED = "failed"
        RECOVERED = "recovered"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="notifications")
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE,
                                  related_name="notifications")
    kind = models.CharField(max_length=64)
    event = models.CharField(max_length=12, choices=Event.choices)
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["operation", "event"],
                                               name="one_notification_per_event")]
        indexes = [models.Index(fields=["owner", "read_at"]),
                   models.Index(fields=["kind", "event", "created_at"])]

    def __str__(self):
        return f"{self.event}: {self.message}"


class SendWindow(models.Model):
    """When a throttled act last happened: an owner's email digest or a staff alert per kind
    (claiming the window is one conditional UPDATE, so several processes send once), or the
    last start handed out to a bulk retry's children (`BulkRetrySlots`)."""

    key = models.CharField(max_length=200, unique=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.key


class Host(models.Model):
    """A host as the others see it. Its dispatcher beats every second, and so does each of its
    workers while it runs an operation: a host silent for REBOUND_HOST_DEAD_AFTER lost power
    (or its network), and another host's dispatcher recovers what it held. A dispatcher that
    stops on purpose says so, and its host is not taken for dead."""

    name = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    dispatcher_beat_at = models.DateTimeField(null=True, blank=True)
    # Set when the dispatcher stops on purpose (a clean handover), cleared by any new beat.
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name

    @classmethod
    def beat(cls, name: str, *, dispatcher: bool = False) -> None:
        """A process of this host is alive (database clock)."""
        fields = {"beat_at": Now(), "stopped_at": None}
        if dispatcher:
            fields["dispatcher_beat_at"] = Now()
        if not cls.objects.filter(name=name).update(**fields):
            cls.objects.get_or_create(name=name, defaults={
                "started_at": Now(), "beat_at": Now(),
                "dispatcher_beat_at": Now() if dispatcher else None})

    @classmethod
    def stop(cls, name: str) -> None:
        cls.objects.filter(name=name).update(stopped_at=Now())

    @classmethod
    def dead(cls, seconds: float) -> list[str]:
        """Hosts silent for `seconds` that did not stop on purpose."""
        return list(cls.objects.filter(stopped_at__isnull=True,
                                       beat_at__lt=db_now_plus(-seconds))
                    .values_list("name", flat=True))

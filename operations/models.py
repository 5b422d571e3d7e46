"""The engine's rows: Operation (one unit of background work) and Attempt (one try of it).

Only the methods below write `Operation.status`. Each is one conditional UPDATE whose row count
says whether this caller won; the Attempt row changes in the same transaction.
"""
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.urls import reverse

from operations import events, kinds


class Status(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRY_SCHEDULED = "retry_scheduled"
    # Parked behind the gate of the outside service it needs (`dependency`), which is down:
    # no attempt is made or spent until the gate lets it through again.
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
LIVE = (Status.PENDING, Status.PROCESSING, Status.RETRY_SCHEDULED, Status.WAITING)
CANCELLABLE = (Status.PENDING, Status.RETRY_SCHEDULED, Status.WAITING)


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
# Creation breaks ties (enqueued in the same millisecond): first in, first out.
QUEUE_ORDER = [F("started_at").asc(nulls_last=True), "enqueued_at", "created_at"]


class Operation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64)  # indexed with created_at below
    # Indexed with created_at below (an owner's newest first), not on its own.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="operations", db_index=False)
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
    # Attempts that failed into an outage of the dependency (handed back to wait for it): they
    # are recorded like any other, but not counted against the kind's attempt budget.
    attempts_waived = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    # The outside service the next attempt needs ("inference:eu-west", "storage"): while its
    # gate is not closed the operation waits (status `waiting`, since `waiting_since`).
    dependency = models.CharField(max_length=120, blank=True, default="")
    waiting_since = models.DateTimeField(null=True, blank=True)
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
    # Counted into the rollups (operations.rollups.fold) once finished; a finished row is
    # counted exactly once, and only counted rows are ever pruned.
    rolled_up = models.BooleanField(default=False, db_default=False)

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
            # Due retries (the dispatcher releases them) and running work (it recovers lost
            # leases): partial, so the history's finished rows cost them nothing.
            models.Index(fields=["next_attempt_at"], name="operation_scheduled",
                         condition=models.Q(status="retry_scheduled")),
            models.Index(fields=["lease_expires_at"], name="operation_processing",
                         condition=models.Q(status="processing")),
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["kind", "created_at"]),
            models.Index(fields=["updated_at"], condition=models.Q(followup_due=True),
                         name="operation_followup_due"),
            # The queue a draining worker takes from: pending, in QUEUE_ORDER.
            models.Index(fields=["started_at", "enqueued_at", "created_at"],
                         condition=models.Q(status="pending"), name="operation_pending"),
            # What waits for each dependency, oldest first (probes and release after recovery).
            models.Index(fields=["dependency", "created_at"],
                         condition=models.Q(status="waiting"), name="operation_waiting_oldest"),
            # Finished and not yet counted into the rollups (a short list: the fold empties it).
            models.Index(fields=["finished_at"], name="operation_to_roll_up",
                         condition=models.Q(finished_at__isnull=False, rolled_up=False)),
            # Staff lists: newest first, overall and per status (and retention: oldest first).
            models.Index(fields=["-created_at"], name="operation_newest"),
            models.Index(fields=["status", "-created_at"], name="operation_status_newest"),
            # An owner's failures (what they retry), newest first.
            models.Index(fields=["owner", "-created_at"], name="operation_owner_failed",
                         condition=models.Q(status="failed")),
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
    def waiting_message(self) -> str:
        """For a waiting operation: what it waits for, since when, and that it goes on."""
        from operations.dependencies import waiting_message

        return waiting_message(self.dependency, self.waiting_since)

    @property
    def attempts_spent(self) -> int:
        """Attempts counted against the kind's budget: those not lost to an outage."""
        return self.attempt_count - self.attempts_waived

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
                                          started_at=Now(), dependency=self.dependency)

    @classmethod
    def claim_next(cls, holder: str, pk=None, blocked=frozenset(),
                   probes=frozenset()) -> "Operation | None":
        """Claim operation `pk` (a delivery) or, without one, the first pending operation in
        QUEUE_ORDER (a worker draining the queue), and record its Attempt. Operations that need
        a dependency in `blocked` (its gate is not closed) are left alone, but for the gates'
        `probes`. None: nothing to claim, or another claim won. (`fastpath.claim_next` does the
        same in one statement on PostgreSQL.)"""
        candidates = cls.objects.filter(status=Status.PENDING)
        if blocked:
            candidates = candidates.filter(~models.Q(dependency__in=blocked)
                                           | models.Q(pk__in=probes))
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
                error_detail=error.detail if error else "",
                dependency_down=bool(error and getattr(error, "dependency_down", False)))
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
        elif not policy.allows_another(self.attempts_spent):
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

    def hand_back(self, token, attempt_number: int, error) -> bool:
        """processing -> waiting: the attempt failed because its dependency is down (its gate
        is open). The attempt is recorded as it happened; the budget is not spent on it."""
        self.error_code, self.error_message = error.code, error.message[:500]
        return self._finish(token, attempt_number, Outcome.TRANSIENT, error=error,
                            also=lambda: events.about_operation(
                                "operation.waiting", self, status=Status.WAITING, once=False),
                            status=Status.WAITING, waiting_since=Now(), next_attempt_at=None,
                            next_trigger=Trigger.AUTO,
                            attempts_waived=F("attempts_waived") + 1, **_error_fields(error))

    @classmethod
    def park(cls, dependency: str, *, keep=()) -> int:
        """pending | retry_scheduled -> waiting, for operations that need `dependency` (whose
        gate is not closed), except those in `keep` (the gate's probe). Costs no attempt."""
        candidates = cls.objects.filter(
            status__in=(Status.PENDING, Status.RETRY_SCHEDULED), dependency=dependency,
        ).exclude(pk__in=list(keep))
        with transaction.atomic():
            # Locked, so the rows this UPDATE moves are exactly the ones announced; one a
            # worker holds (claiming it) is left for the next tick.
            parked = list(candidates.select_for_update(skip_locked=True)
                          .only(*events.OPERATION_FIELDS))
            if not parked:
                return 0
            cls.objects.filter(pk__in=[op.pk for op in parked]).update(
                status=Status.WAITING, waiting_since=Now(), next_attempt_at=None,
                updated_at=Now())
            for operation in parked:
                events.about_operation("operation.waiting", operation, status=Status.WAITING,
                                       once=False)
        return len(parked)

    def unpark(self) -> bool:
        """waiting -> pending (the gate let it through); the winner enqueues it."""
        with transaction.atomic():
            if not self._this().filter(status=Status.WAITING).update(
                    status=Status.PENDING, waiting_since=None, enqueued_at=Now(),
                    updated_at=Now()):
                return False
            if events.listening():
                operation = Operation.objects.only(*events.OPERATION_FIELDS).get(pk=self.pk)
                events.about_operation("operation.resumed", operation, once=False)
        return True

    def give_up_waiting(self, error) -> bool:
        """waiting -> failed: its dependency stayed down past REBOUND_WAIT_LIMIT."""
        return self._this().filter(status=Status.WAITING).update(
            status=Status.FAILED, finished_at=Now(), followup_due=True, updated_at=Now(),
            **_error_fields(error)) == 1

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
        """pending | retry_scheduled | waiting -> cancelled. False: already running or
        finished."""
        won = Operation.cancel_all(self._this())
        if won:
            self.refresh_from_db()
        return won == 1

    @classmethod
    def cancel_all(cls, operations) -> int:
        """The same for every operation of a queryset that has not started, in one UPDATE
        (work its workload no longer wants: a deleted webhook endpoint's deliveries)."""
        return operations.filter(status__in=CANCELLABLE).update(
            status=Status.CANCELLED, next_attempt_at=None, finished_at=Now(), updated_at=Now())


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
    # The dependency this attempt called, and whether it failed because that service was away
    # (what its gate counts).
    dependency = models.CharField(max_length=120, blank=True, default="")
    dependency_down = models.BooleanField(default=False)
    rolled_up = models.BooleanField(default=False, db_default=False)  # as Operation.rolled_up

    class Meta:
        ordering = ["operation", "number"]
        constraints = [
            models.UniqueConstraint(fields=["operation", "number"], name="one_attempt_per_number"),
        ]
        indexes = [
            models.Index(fields=["id"], name="attempt_to_roll_up",
                         condition=models.Q(finished_at__isnull=False, rolled_up=False)),
            # A gate's recent calls, newest first (does the dependency look down?).
            models.Index(fields=["dependency", "finished_at"],
                         condition=~models.Q(dependency=""), name="attempt_dependency"),
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
    (claiming the window is one conditional UPDATE, so several processes send once), the
    last start handed out to a bulk retry's children (`BulkRetrySlots`), or the time before
    which finished history has been pruned (`operations.rollups.PRUNED_THROUGH`)."""

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
        if cls.objects.filter(name=name).update(**fields):
            return
        try:
            with transaction.atomic():
                cls.objects.create(name=name, started_at=Now(), beat_at=Now(),
                                   dispatcher_beat_at=Now() if dispatcher else None)
        except IntegrityError:
            # Another process of this host wrote the row first: beat on it.
            cls.objects.filter(name=name).update(**fields)

    @classmethod
    def stop(cls, name: str) -> None:
        cls.objects.filter(name=name).update(stopped_at=Now())

    @classmethod
    def dead(cls, seconds: float) -> list[str]:
        """Hosts silent for `seconds` that did not stop on purpose."""
        return list(cls.objects.filter(stopped_at__isnull=True,
                                       beat_at__lt=db_now_plus(-seconds))
                    .values_list("name", flat=True))


class GateState(models.TextChoices):
    CLOSED = "closed"  # calls flow
    OPEN = "open"  # nothing calls: the work that needs it waits
    HALF_OPEN = "half_open"  # one probe, across all hosts


class Gate(models.Model):
    """One outside service that operations need (`Operation.dependency`), as every host sees
    it. The database is the source of truth; each change is a conditional UPDATE on the state
    it came from, so two dispatchers never both open, probe or close it. No row: closed."""

    key = models.CharField(max_length=120, unique=True)
    state = models.CharField(max_length=10, choices=GateState.choices, default=GateState.CLOSED)
    since = models.DateTimeField()
    # Open: nothing is let through before this (the cool-down, or what a Retry-After asked).
    open_until = models.DateTimeField(null=True, blank=True)
    cooldown_seconds = models.FloatField(default=0.0)
    # Half-open: the one operation let through to see whether the service is back.
    probe = models.UUIDField(null=True, blank=True)
    probes = models.PositiveIntegerField(default=0)  # probes sent since it opened
    # Held open by staff (maintenance announced): no probe until they release it.
    held = models.BooleanField(default=False)
    # Closed after an outage: how many waiting operations have been let go since (slow start).
    released = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=300, blank=True)

    def __str__(self):
        return f"{self.key} ({self.state})"


class GateEvent(models.Model):
    """A gate's history: each opening, probe result, closing, hold and release, and who."""

    gate = models.ForeignKey(Gate, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=10, choices=GateState.choices)
    reason = models.CharField(max_length=300, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                           on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.gate.key} -> {self.state}"


class Grain(models.TextChoices):
    HOUR = "h"
    DAY = "d"
    TOTAL = "t"  # since the beginning: `period` is the epoch


class Rollup(models.Model):
    """One figure of finished work (operations finished by status, attempts by outcome, manual
    retries, time-to-success buckets...) for a kind and a value of an input key ("region"; ""
    without one), per hour, per day and in total. Only `operations.rollups` writes them: a
    finished Operation or Attempt row adds to them once, in the transaction that marks it
    `rolled_up`. Pruning never touches them, so the figures outlive the rows."""

    grain = models.CharField(max_length=1, choices=Grain.choices)
    period = models.DateTimeField()
    kind = models.CharField(max_length=64)
    key = models.CharField(max_length=120, blank=True, default="")
    figure = models.CharField(max_length=40)
    value = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["grain", "period", "kind", "key", "figure"],
                                               name="one_rollup_per_figure")]

    def __str__(self):
        return f"{self.kind} {self.key} {self.figure}@{self.grain}{self.period:%Y-%m-%d %H}"

"""Telling people: the owner of an operation that failed for good (or a retried chain that
recovered) gets an in-app notification at once and an email digest at most once per window;
staff get one alert per kind per window (an ERROR log line, and mail to ADMINS when set).

Notifications are rows; what was emailed is marked on them; each window is one row claimed with
a conditional UPDATE, so several workers and dispatchers send each digest and alert once.
"""
import logging

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db.models import Q
from django.db.models.functions import Now

from operations.models import Notification, Operation, SendWindow, Status, db_now_plus

log = logging.getLogger("rebound.notifications")


def window_seconds() -> float:
    return settings.REBOUND["NOTIFY_EVERY_SECONDS"]


def record(operation: Operation) -> str | None:
    """The owner's notification for this final state (once per operation and event); returns
    the event, or None when there is nothing to tell."""
    title = operation.kind_spec.title
    if operation.status == Status.FAILED:
        event = Notification.Event.FAILED
        message = f"{title} failed: {operation.error_message}"
        SendWindow.objects.get_or_create(key=f"alert:{operation.kind}")
    elif operation.status == Status.COMPLETED and operation.retry_number:
        event = Notification.Event.RECOVERED
        message = f"{title} recovered: retry {operation.retry_number} succeeded."
    else:
        return None
    # One INSERT (no read first); the unique (operation, event) keeps it to one row.
    Notification.objects.bulk_create(
        [Notification(operation=operation, event=event, owner_id=operation.owner_id,
                      kind=operation.kind, message=message[:300])], ignore_conflicts=True)
    return event


def deliver_due() -> dict:
    """Send every digest and alert whose window is open. Never raises."""
    sent = {"emails": 0, "alerts": 0}
    try:
        sent["emails"] = _send_digests()
        sent["alerts"] = _send_alerts()
    except Exception:  # noqa: BLE001 - telling people must never break the work itself
        log.exception("sending notifications failed; the next sweep tries again")
    return sent


def _open(key: str):
    """Windows with this key that may be sent now (database clock)."""
    return SendWindow.objects.filter(key=key).filter(
        Q(last_sent_at__isnull=True) | Q(last_sent_at__lte=db_now_plus(-window_seconds())))


def _claim(key: str):
    """Take the window `key` if it is open: (True, when it was last sent) or (False, None).
    A closed window costs one read; only an open one is written (SQLite: no write lock)."""
    window, _ = SendWindow.objects.get_or_create(key=key)
    if not _open(key).exists():
        return (False, None)
    previous = window.last_sent_at
    same = Q(last_sent_at__isnull=True) if previous is None else Q(last_sent_at=previous)
    won = _open(key).filter(same).update(last_sent_at=Now())
    return (won == 1, previous)


def _send_digests() -> int:
    owners = (Notification.objects.filter(emailed_at__isnull=True).order_by()
              .values_list("owner_id", flat=True).distinct())
    sent = 0
    for owner_id in list(owners):
        won, _ = _claim(f"email:{owner_id}")
        if won:
            sent += _send_digest(owner_id)
    return sent


def _send_digest(owner_id) -> int:
    pending = list(Notification.objects.filter(owner_id=owner_id, emailed_at__isnull=True)
                   .select_related("owner").order_by("created_at", "id"))
    if not pending:
        return 0
    owner = pending[0].owner
    # Marked as handled even without an address: there is nobody to send it to.
    Notification.objects.filter(pk__in=[n.pk for n in pending]).update(emailed_at=Now())
    if not owner.email:
        return 0
    failed = sum(n.event == Notification.Event.FAILED for n in pending)
    subject = (f"Rebound: {failed} failed" if failed else "Rebound: recovered") + (
        f", {len(pending) - failed} recovered" if failed and failed < len(pending) else "")
    lines = [f"- {n.created_at:%Y-%m-%d %H:%M} UTC  {n.message}  (reference "
             f"{str(n.operation_id)[:8]})" for n in pending]
    body = (f"Hello {owner.get_username()},\n\n" + "\n".join(lines)
            + "\n\nOpen Rebound to see what happened and retry what failed.\n")
    send_mail(subject, body, None, [owner.email])
    return 1


def _send_alerts() -> int:
    sent = 0
    for window in SendWindow.objects.filter(key__startswith="alert:"):
        kind = window.key.removeprefix("alert:")
        failures = Notification.objects.filter(kind=kind, event=Notification.Event.FAILED)
        if window.last_sent_at is not None:
            failures = failures.filter(created_at__gt=window.last_sent_at)
        if not failures.exists():
            continue
        won, previous = _claim(window.key)
        if not won:
            continue
        until = SendWindow.objects.get(key=window.key).last_sent_at
        counted = Notification.objects.filter(kind=kind, event=Notification.Event.FAILED,
                                              created_at__lte=until)
        if previous is not None:
            counted = counted.filter(created_at__gt=previous)
        count = counted.count()
        log.error("operations failed for good: kind=%s count=%s since=%s", kind, count,
                  previous.isoformat() if previous else "start")
        if settings.ADMINS:
            mail_admins(f"{count} {kind} operation(s) failed for good",
                        f"{count} operation(s) of kind {kind} failed for good since "
                        f"{previous or 'the start'}. See the admin for details.")
        sent += 1
    return sent

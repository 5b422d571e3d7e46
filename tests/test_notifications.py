"""People hear about final failures: the owner in the app at once and by email in throttled
digests, staff by one alert per kind per window; a retried chain that succeeds is a recovery."""
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.db.models import F
from django.utils import timezone

from operations import dispatcher, notifications, runner
from operations.models import Channel, Notification, Operation, SendWindow
from operations.services import retry_operation, submit
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def owner(user):
    user.email = "alice@example.com"
    user.save()
    return user


def fail_one(owner, **input):
    operation = submit("diagnostics.flaky", owner, {"fail_attempts": [1], "error": "permanent",
                                                    **input})
    assert runner.run(operation.pk) == "failed"
    return operation


def eleven_minutes_pass():
    """Backdate what was sent and recorded, instead of sleeping through the window."""
    SendWindow.objects.update(last_sent_at=F("last_sent_at") - timedelta(minutes=11))
    Notification.objects.update(created_at=F("created_at") - timedelta(minutes=11))


def test_a_final_failure_notifies_the_owner_in_the_app_once(owner, web):
    operation = fail_one(owner)
    runner.run(operation.pk)  # a duplicate delivery
    [notification] = Notification.objects.all()
    assert (notification.owner, notification.event) == (owner, "failed")
    assert "Flaky failed" in notification.message
    page = web.get("/notifications/").content.decode()
    assert notification.message in page and operation.get_absolute_url() in page
    assert '<span id="unread-count" class="badge"' in web.get("/").content.decode()


def test_a_transient_failure_that_will_be_retried_is_not_notified(owner):
    operation = submit("diagnostics.flaky", owner, {"fail_attempts": [1]})
    assert runner.run(operation.pk) == "retry_scheduled"
    assert not Notification.objects.exists()


def test_a_retried_chain_that_succeeds_tells_the_owner_it_recovered(owner):
    failed = fail_one(owner, succeed_on_retry=1)
    child = retry_operation(failed.pk, by=owner, channel=Channel.WEB)
    assert runner.run(child.pk) == "completed"
    recovered = Notification.objects.get(event="recovered")
    assert recovered.operation == child and "recovered" in recovered.message


def test_marking_one_as_read_with_htmx_updates_the_header_count(owner, web):
    fail_one(owner)
    fail_one(owner)
    first = Notification.objects.first()
    response = web.post(f"/notifications/{first.pk}/read", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "Mark as read" not in body
    assert 'id="unread-count"' in body and 'hx-swap-oob="true"' in body and ">1<" in body
    first.refresh_from_db()
    assert first.read_at is not None


def test_marking_all_as_read_without_javascript(owner, web):
    fail_one(owner)
    fail_one(owner)
    response = web.post("/notifications/read-all", follow=True)
    assert "Marked 2 notifications as read." in response.content.decode()
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_someone_elses_notification_cannot_be_marked(owner, client, other_user):
    fail_one(owner)
    client.force_login(other_user)
    notification = Notification.objects.get()
    assert client.post(f"/notifications/{notification.pk}/read").status_code == 404
    assert "Nothing to tell you" in client.get("/notifications/").content.decode()


def test_emails_are_throttled_and_later_ones_summarised_in_the_next(owner):
    fail_one(owner)
    notifications.deliver_due()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    fail_one(owner)
    fail_one(owner)
    assert notifications.deliver_due()["emails"] == 0  # inside the 10-minute window
    assert len(mail.outbox) == 1
    eleven_minutes_pass()
    notifications.deliver_due()
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "Rebound: 2 failed"
    assert mail.outbox[1].body.count("Flaky failed") == 2


def test_each_owner_has_a_window_of_their_own(owner):
    bob = UserFactory(username="bob", email="bob@example.com")
    fail_one(owner)
    fail_one(bob)
    notifications.deliver_due()
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com"]


def test_staff_get_one_alert_per_kind_per_window_with_the_count(owner, settings, caplog):
    settings.ADMINS = [("Ops", "ops@example.com")]
    caplog.set_level(logging.ERROR, logger="rebound.notifications")
    fail_one(owner)
    fail_one(owner)
    notifications.deliver_due()
    alerts = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert alerts == ["operations failed for good: kind=diagnostics.flaky count=2 since=start"]
    assert [m.to for m in mail.outbox if m.subject.startswith("[Django]")] == [
        ["ops@example.com"]]
    fail_one(owner)
    assert notifications.deliver_due()["alerts"] == 0  # window closed
    eleven_minutes_pass()
    assert notifications.deliver_due()["alerts"] == 1
    assert "count=1" in caplog.records[-1].getMessage()


def test_the_dispatcher_sends_due_notifications(owner):
    fail_one(owner)
    assert dispatcher.sweep()["notified"] >= 1
    assert len(mail.outbox) == 1


def test_an_operation_that_crashes_repeatedly_is_notified_by_the_dispatcher(owner):
    operation = submit("diagnostics.noop", owner, {})
    for _ in range(3):  # three workers die holding it
        Operation.objects.filter(pk=operation.pk).update(status="pending")
        operation.refresh_from_db()
        operation.claim("far-away-host:1:1")
        Operation.objects.filter(pk=operation.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert dispatcher.recover_lost() == 1
    operation.refresh_from_db()
    assert operation.status == "failed" and operation.error_code == "crashed_repeatedly"
    assert Notification.objects.filter(operation=operation, event="failed").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_several_dispatchers_send_each_digest_and_alert_once(owner, caplog):
    from tests.running import in_threads

    caplog.set_level(logging.ERROR, logger="rebound.notifications")
    fail_one(owner)
    fail_one(owner)
    sent = in_threads(6, lambda i: notifications.deliver_due())
    assert sum(s["emails"] for s in sent) == 1 and len(mail.outbox) == 1
    assert sum(s["alerts"] for s in sent) == 1
    assert len([r for r in caplog.records if "failed for good" in r.getMessage()]) == 1

"""Admin actions go through the same retry service and say how many rows they skipped."""
import pytest
from django.contrib.messages import get_messages

from operations.models import Operation, Status
from tests.factories import OperationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def run_action(client, action, operations):
    return client.post("/admin/operations/operation/", {
        "action": action, "_selected_action": [str(o.pk) for o in operations]}, follow=True)


def test_retry_selected_retries_failed_rows_and_reports_skipped_ones(staff_client, user):
    failed = OperationFactory(owner=user, failed=True)
    completed = OperationFactory(owner=user, completed=True)
    at_limit = OperationFactory(owner=user, failed=True, retry_number=3, is_retry=True)
    response = run_action(staff_client, "retry_selected", [failed, completed, at_limit])
    message = [str(m) for m in get_messages(response.wsgi_request)][0]
    assert message.startswith("Retried 1; skipped 2")
    assert "not failed" in message and "retry limit reached" in message
    child = Operation.objects.get(parent=failed)
    assert child.channel == "admin" and child.triggered_by.username == "staff"
    assert not Operation.objects.filter(parent__in=[completed, at_limit]).exists()


def test_cancel_selected_cancels_waiting_rows_and_skips_others(staff_client, user):
    waiting = OperationFactory(owner=user, scheduled=True)
    done = OperationFactory(owner=user, completed=True)
    response = run_action(staff_client, "cancel_selected", [waiting, done])
    message = [str(m) for m in get_messages(response.wsgi_request)][0]
    assert message == "Cancelled 1; skipped 1 (1 already completed)."
    assert Operation.objects.get(pk=waiting.pk).status == Status.CANCELLED


def test_operation_change_page_shows_attempts_and_lineage(staff_client, user):
    failed = OperationFactory(owner=user, failed=True)
    page = staff_client.get(f"/admin/operations/operation/{failed.pk}/change/").content.decode()
    assert "Lineage" in page and "ai_unavailable" in page and "Attempts" in page


def test_admin_list_filters_by_status(staff_client, user):
    OperationFactory(owner=user, failed=True)
    response = staff_client.get("/admin/operations/operation/?status__exact=failed")
    assert response.status_code == 200 and "1 operation" in response.content.decode()

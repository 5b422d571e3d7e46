"""The executions admin: jobs with their questions, cells filterable by derived status, the
chain's history on a cell's page, and retry actions through the engine's services."""
import pytest
from django.contrib.messages import get_messages

from operations.models import Operation
from tests.factories import UserFactory
from tests.executions_helpers import failed_cell

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(timed_out_job):
    return timed_out_job


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_cells_filter_by_their_derived_status(staff, job):
    page = staff.get("/admin/executions/execution/?status=timeout").content.decode()
    assert "2 executions" in page and "asia-pacific" in page
    page = staff.get("/admin/executions/execution/?status=completed").content.decode()
    assert "2 executions" in page and "us-east" in page
    assert "0 executions" in staff.get("/admin/executions/execution/?status=running").content.decode()


def test_a_cells_page_shows_its_whole_history(staff, job):
    cell = failed_cell(job)
    page = staff.get(f"/admin/executions/execution/{cell.pk}/change/").content.decode()
    assert page.count("ai_timeout") >= 4 and "History (every attempt" in page


def test_the_job_page_lists_its_questions(staff, job):
    page = staff.get(f"/admin/executions/job/{job.pk}/change/").content.decode()
    assert "What is a lease?" in page and "Why add jitter?" in page


def test_retry_selected_retries_failed_cells_and_counts_the_others(staff, job):
    response = staff.post("/admin/executions/execution/", {
        "action": "retry_selected",
        "_selected_action": [str(e.pk) for e in job.executions.all()]}, follow=True)
    message = [str(m) for m in get_messages(response.wsgi_request)][0]
    assert message == "Retried 2; skipped 2 (2 not failed)."
    assert Operation.objects.filter(is_retry=True, channel="admin").count() == 2


def test_retry_all_failed_previews_first_then_retries(staff, job):
    ids = [str(e.pk) for e in job.executions.all()]
    preview = staff.post("/admin/executions/execution/", {
        "action": "retry_all_failed", "_selected_action": ids}).content.decode()
    assert "2 operations will be retried" in preview and "ai_timeout" in preview
    assert "2 not failed" in preview
    assert not Operation.objects.filter(is_retry=True).exists()
    response = staff.post("/admin/executions/execution/", {
        "action": "retry_all_failed", "_selected_action": ids, "confirm": "yes"}, follow=True)
    assert [str(m) for m in get_messages(response.wsgi_request)][0].startswith("Retried 2")

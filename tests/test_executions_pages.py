"""The job pages: the live grid (polling only while something runs, swapping only changed
cells), Retry (n/3) per cell, "Retry all failed" with a preview, each cell's history, and the
same without JavaScript."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Job
from operations.models import Operation
from tests.executions_helpers import create, drain, failed_cell

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def job(timed_out_job):
    return timed_out_job


def test_the_grid_shows_each_cell_with_an_amber_retry_button(web, job):
    page = web.get(job.get_absolute_url()).content.decode()
    assert page.count('class="cell cell-completed"') == 2
    assert page.count('class="cell cell-timeout"') == 2
    assert page.count("Retry (1/3)") == 2 and 'class="retry"' in page and "Retrying…" in page
    assert "2 / 2" in page  # done per region
    assert "Retry all failed" in page and "Retry metrics by region" in page
    assert "<td>100 %</td>" in page  # the region whose cells all completed


def test_the_grid_polls_while_cells_run_and_stops_when_none_does(web, api, ai):
    job_id = create(api).json()["id"]
    page = web.get(f"/jobs/{job_id}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and '<meta http-equiv="refresh"' in page
    drain(job_id)
    poll = web.get(f"/jobs/{job_id}/cells", **HTMX).content.decode()
    assert 'id="grid-poll"' in poll and "hx-trigger" not in poll.split("</div>")[0]
    assert 'hx-trigger="every 2s"' not in web.get(f"/jobs/{job_id}/").content.decode()


def test_a_poll_swaps_only_the_cells_that_changed(web, job):
    since = timezone.now().isoformat()
    nothing_new = web.get(f"/jobs/{job.pk}/cells", {"since": since}, **HTMX).content.decode()
    assert '<td id="cell-' not in nothing_new and 'id="job-summary"' in nothing_new
    cell = failed_cell(job)
    Operation.objects.filter(pk=cell.operation_id).update(
        updated_at=timezone.now() + timedelta(seconds=1))
    poll = web.get(f"/jobs/{job.pk}/cells", {"since": since}, **HTMX).content.decode()
    assert poll.count('<td id="cell-') == 1 and f'id="cell-{cell.pk}"' in poll


def test_retry_from_the_grid_swaps_the_cell_toasts_and_polls_again(web, job):
    cell = failed_cell(job)
    response = web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry", **HTMX)
    body = response.content.decode()
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    assert f'id="cell-{cell.pk}" class="cell cell-pending"' in body
    assert 'hx-trigger="every 2s"' in body  # the poll starts again
    assert Operation.objects.filter(parent_id=cell.operation_id, channel="web").exists()


def test_a_refused_retry_toasts_why(web, job):
    cell = failed_cell(job)
    web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry", **HTMX)
    again = web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry", **HTMX)
    toast = json.loads(again["HX-Trigger"])["toast"]
    assert toast["level"] == "error" and "already been retried" in toast["message"]


def test_retry_without_javascript_redirects_back_with_a_message(web, job):
    cell = failed_cell(job)
    response = web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry", follow=True)
    assert response.redirect_chain[-1][0] == job.get_absolute_url()
    assert "Retry started: asia-pacific × question 1." in response.content.decode()


def test_at_the_limit_the_button_gives_way_to_retry_limit_reached(ai, web, job):
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[408])
    cell = failed_cell(job)
    for _ in range(3):
        web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry")
        drain(job.pk)
    page = web.get(job.get_absolute_url()).content.decode()
    assert "Retry limit reached" in page and "Retry (4/3)" not in page
    assert "Retry (1/3)" in page  # the other failed cell


def test_retry_all_failed_shows_a_preview_then_the_report(web, job):
    from executions.services import retry_cell

    retry_cell(failed_cell(job, 1), by=job.owner, channel="web")
    drain(job.pk)  # that retry succeeds: one failed cell remains
    preview = web.get(f"/jobs/{job.pk}/retry-failed", **HTMX).content.decode()
    assert "1 failed: 1 timeout." in preview and "Retry 1" in preview
    assert not Operation.objects.filter(parent_id=failed_cell(job).operation_id).exists()
    response = web.post(f"/jobs/{job.pk}/retry-failed", {"reason": "after the outage"}, **HTMX)
    assert "Retried 1." in response.content.decode()
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    child = Operation.objects.get(parent_id=failed_cell(job).operation_id)
    assert child.retry_reason == "after the outage"


def test_the_preview_names_what_will_be_skipped(ai, web, job):
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[408])
    cell = failed_cell(job)
    for _ in range(3):
        web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry")
        drain(job.pk)
    preview = web.get(f"/jobs/{job.pk}/retry-failed").content.decode()
    assert "2 failed: 2 timeout; 1 at its retry limit will be skipped." in preview


def test_retry_all_failed_without_javascript(web, job):
    response = web.post(f"/jobs/{job.pk}/retry-failed", follow=True)
    assert "Retried 2." in response.content.decode()


def test_a_cells_history_lists_attempts_and_manual_retries(web, job):
    cell = failed_cell(job)
    web.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry", {"reason": "cold start"})
    drain(job.pk)
    page = web.get(f"/jobs/{job.pk}/cells/{cell.pk}/history").content.decode()
    assert page.count("<tr>") - 1 == 5  # four attempts of the original, one of the retry
    assert "cold start" in page and "by alice via web" in page and "ai_timeout" in page


def test_the_new_job_form_shows_errors_next_to_the_fields(web):
    response = web.post("/jobs/new", {"title": "t", "questions": ""})
    page = response.content.decode()
    assert response.status_code == 200  # the form again, with the errors next to the fields
    assert 'id="job-regions-error"' in page and 'id="job-questions-error"' in page
    assert not Job.objects.exists()


def test_the_new_job_form_starts_a_job(ai, web):
    response = web.post("/jobs/new", {"title": "Regions", "model": "m-2",
                                      "regions": ["us-east", "eu-west"],
                                      "questions": "First?\n\nSecond?\n"})
    job = Job.objects.get()
    assert response["Location"] == job.get_absolute_url()
    assert job.regions == ["us-east", "eu-west"] and job.executions.count() == 4
    assert [q.text for q in job.questions.all()] == ["First?", "Second?"]


def test_someone_elses_job_pages_are_404(client, other_user, job):
    client.force_login(other_user)
    cell = failed_cell(job)
    for url in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/cells", f"/jobs/{job.pk}/retry-failed",
                f"/jobs/{job.pk}/cells/{cell.pk}/history"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/jobs/{job.pk}/cells/{cell.pk}/retry").status_code == 404
    assert not Operation.objects.filter(is_retry=True).exists()

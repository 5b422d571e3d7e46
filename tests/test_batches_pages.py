"""The batch pages: new batch (pasted or uploaded essays), the phase × essay grid that polls
while anything runs, Retry phase with a reason (and chosen essays), history, the ranking, and
the admin action; each also without JavaScript."""
import json

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from batches.models import Batch, PhaseOutput
from batches.pipeline import request_pipeline
from batches.services import create_batch
from operations.models import Operation
from tests.batches_helpers import assert_one_output_per_step, drain, essay
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def i5_after_each_test():
    yield
    assert_one_output_per_step()


@pytest.fixture
def failed_feedback(ai, user):
    batch = create_batch(user, title="Essays", region="asia-pacific",
                         essays=[essay(i) for i in range(3)] + ["Far too short."])
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[500])
    request_pipeline(batch, "cj_assessment")
    drain(batch.pk)
    ai.faults(region="asia-pacific", error_rate=0.0)
    return batch


def test_a_new_batch_from_pasted_essays_runs_every_phase(ai, web):
    text = f"{essay(0)}\n---\n{essay(1)}\n  ---  \n{essay(2)}"
    response = web.post("/batches/new", {"title": "Class 3B", "region": "eu-west",
                                         "essays": text, "run": "on"})
    batch = Batch.objects.get()
    assert response["Location"] == batch.get_absolute_url()
    assert batch.essays.count() == 3 and batch.requested_phase == "cj_assessment"
    drain(batch.pk)
    page = web.get(batch.get_absolute_url()).content.decode()
    assert "Ranking" in page and page.count("<li>Essay ") == 3


def test_a_new_batch_from_uploaded_text_files(web):
    files = [SimpleUploadedFile(f"essay{i}.txt", essay(i).encode()) for i in range(2)]
    web.post("/batches/new", {"title": "Uploaded", "essays": "", "files": files})
    batch = Batch.objects.get()
    assert [e.text for e in batch.essays.all()] == [essay(0), essay(1)]
    assert batch.requested_phase == ""  # "run now" was not ticked


def test_a_new_batch_refuses_other_files_and_says_why(web):
    response = web.post("/batches/new", {"title": "Bad", "essays": "",
                                         "files": [SimpleUploadedFile("e.pdf", b"%PDF")]})
    assert response.status_code == 200  # the form again, with the reason
    assert "only .txt files" in response.content.decode() and not Batch.objects.exists()


def test_the_grid_shows_each_phase_of_each_essay_and_why_one_is_left_out(web,
                                                                        failed_feedback):
    page = web.get(failed_feedback.get_absolute_url()).content.decode()
    assert "Failed for good" in page and "too short to judge" in page
    assert "Left out" in page
    assert "3 failed in AI feedback." in page and "Retry phase" in page
    assert "Waiting for 3 essays to finish AI feedback" in page
    assert "Retry their failed phase above." in page  # nothing runs: only a retry helps
    assert 'data-counter="reason-ai_feedback-count"' in page and "0 / 500" in page


def test_the_grid_polls_while_a_step_runs_and_stops_when_none_does(ai, web, user):
    batch = create_batch(user, title="b", essays=[essay(0)])
    request_pipeline(batch, "spellcheck")
    assert 'hx-trigger="every 2s"' in web.get(batch.get_absolute_url()).content.decode()
    drain(batch.pk)
    assert "hx-trigger" not in web.get(batch.get_absolute_url(), **HTMX).content.decode()


def test_the_grid_keeps_polling_between_a_step_ending_and_the_next_starting(web, user):
    from operations import followups
    from operations.models import Status

    batch = create_batch(user, title="b", essays=[essay(0)])
    request_pipeline(batch, "nlp")
    spellcheck = Operation.objects.get(kind="batches.spellcheck")
    # The final write (and its output) has landed; the follow-up that starts nlp has not run.
    Operation.objects.filter(pk=spellcheck.pk).update(status=Status.COMPLETED, followup_due=True)
    PhaseOutput.objects.create(batch=batch, phase="spellcheck", essay=batch.essays.get(),
                               operation=spellcheck, output={"count": 0, "misspellings": []})
    page = web.get(batch.get_absolute_url(), **HTMX).content.decode()
    assert 'hx-trigger="every 2s"' in page and "Nothing is running" not in page
    assert "Waiting for 1 essay" in page and "Retry their failed phase" not in page
    assert followups.run(spellcheck.pk)
    assert Operation.objects.filter(kind="batches.nlp").exists()
    assert 'hx-trigger="every 2s"' in web.get(batch.get_absolute_url(), **HTMX).content.decode()


def test_retry_phase_with_a_reason_from_the_page_toasts_and_continues(web, failed_feedback):
    chosen = [str(e.pk) for e in failed_feedback.essays.all()[:2]]
    response = web.post(f"/batches/{failed_feedback.pk}/phases/ai_feedback/retry",
                        {"reason": "provider back <b>now</b>", "essays": chosen}, **HTMX)
    toast = json.loads(response["HX-Trigger"])["toast"]
    assert toast == {"level": "success", "message": "Retrying 2 of AI feedback."}
    assert 'hx-trigger="every 2s"' in response.content.decode()
    children = Operation.objects.filter(is_retry=True)
    assert {c.retry_reason for c in children} == {"provider back <b>now</b>"}
    drain(failed_feedback.pk)
    page = web.get(failed_feedback.get_absolute_url()).content.decode()
    assert "after a retry: “provider back &lt;b&gt;now&lt;/b&gt;”" in page
    assert "1 failed in AI feedback." in page


def test_retry_phase_without_javascript_redirects_with_the_message(web, failed_feedback):
    response = web.post(f"/batches/{failed_feedback.pk}/phases/ai_feedback/retry",
                        {"reason": ""}, follow=True)
    assert "Retrying 3 of AI feedback." in response.content.decode()


def test_a_refused_phase_retry_says_why(web, failed_feedback):
    response = web.post(f"/batches/{failed_feedback.pk}/phases/cj_assessment/retry", **HTMX)
    toast = json.loads(response["HX-Trigger"])["toast"]
    assert toast["level"] == "error" and "have not finished" in toast["message"]


def test_a_steps_history_lists_its_attempts(web, failed_feedback):
    item = failed_feedback.essays.first()
    page = web.get(f"/batches/{failed_feedback.pk}/phases/ai_feedback/essays/{item.pk}/history")
    assert page.status_code == 200 and page.content.decode().count("ai_unavailable") >= 4


def test_someone_elses_batch_pages_are_404(client, other_user, failed_feedback):
    client.force_login(other_user)
    essay_id = failed_feedback.essays.first().pk
    for url in (f"/batches/{failed_feedback.pk}/",
                f"/batches/{failed_feedback.pk}/phases/ai_feedback/essays/{essay_id}/history"):
        assert client.get(url).status_code == 404
    for url in (f"/batches/{failed_feedback.pk}/run",
                f"/batches/{failed_feedback.pk}/phases/ai_feedback/retry"):
        assert client.post(url).status_code == 404
    assert not Operation.objects.filter(is_retry=True).exists()


def test_the_admin_retries_a_phase_with_a_reason_and_counts_skips(client, failed_feedback):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    form = client.post("/admin/batches/batch/", {
        "action": "retry_failed_phase_items", "_selected_action": [failed_feedback.pk]})
    assert "Retry failed phase items" in form.content.decode()
    response = client.post("/admin/batches/batch/", {
        "action": "retry_failed_phase_items", "_selected_action": [failed_feedback.pk],
        "phase": "ai_feedback", "reason": "staff retry"}, follow=True)
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Retried 3 items; skipped 0."]
    assert set(Operation.objects.filter(is_retry=True).values_list(
        "retry_reason", "channel")) == {("staff retry", "admin")}
    page = client.get(f"/admin/batches/batch/{failed_feedback.pk}/change/").content.decode()
    assert "ai_feedback: 3 pending, 1 left out" in page

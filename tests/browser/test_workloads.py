"""The workloads in a real browser: a failed interview answer retried, Retry (1/3) in a job
grid, Retry phase with a reason in a batch, the gates and metrics pages — each with JavaScript
and without."""
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from batches.pipeline import request_pipeline
from batches.services import create_batch
from executions.models import Job
from executions.services import create_job
from interviews.services import start_session
from operations.models import Operation, Status
from tests.batches_helpers import essay
from tests.browser.helpers import assert_fits_a_phone, assert_not_reloaded, marker, settled
from tests.factories import OperationFactory
from tests.processes import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


# --- interviews --------------------------------------------------------------------------------

@pytest.fixture
def failed_question(live, alice):
    live.faults(region="demo-flaky", sequence=[400])  # refused: fails at once, for good
    session = start_session(alice, "Caching", region="demo-flaky")
    wait_for(lambda: session.turns.get().question_current.status == Status.FAILED, 20,
             what="the question to fail")
    return session


def test_a_failed_interview_question_is_retried_from_its_panel(page, failed_question):
    page.goto(f"/interviews/{failed_question.pk}/")
    marker(page)
    turn = page.locator("article")
    expect(turn.get_by_role("heading", name="Question 1 could not be written")).to_be_visible()
    expect(turn).to_contain_text("The AI service refused the request.")
    turn.get_by_role("button", name="Retry (1/3)").click()
    expect(page.locator("#toasts")).to_contain_text("Retry started.")
    expect(turn.locator("blockquote.question")).to_contain_text("Caching", timeout=15_000)
    expect(turn.get_by_label("Your answer")).to_be_visible()
    assert_not_reloaded(page)


def test_the_interview_retry_works_without_javascript(no_js_page, failed_question):
    no_js_page.goto(f"/interviews/{failed_question.pk}/")
    no_js_page.get_by_role("button", name="Retry (1/3)").click()
    expect(no_js_page.locator("#toasts")).to_contain_text("Retry started.")
    wait_for(lambda: failed_question.turns.get().question != "", 15, what="the question")
    no_js_page.reload()
    expect(no_js_page.locator("blockquote.question")).to_contain_text("Caching")


# --- jobs --------------------------------------------------------------------------------------

@pytest.fixture
def failed_cells(live, alice):
    """A job whose demo-flaky cells were refused (fail at once, for good)."""
    live.faults(region="demo-flaky", error_rate=1.0, statuses=[400])
    job = create_job(alice, title="Regions", model="m", regions=["us-east", "demo-flaky"],
                     questions=["What is a lease?", "Why jitter?"])
    wait_for(lambda: job.executions.filter(operation__isnull=False).count() == 4
             and settled(Operation.objects.filter(input__job_id=job.pk)), 30,
             what="the job to finish")
    live.faults(region="demo-flaky", error_rate=0.0)
    return job


def test_retry_1_of_3_in_a_job_grid_updates_the_cell_without_reloading(page, failed_cells):
    page.goto(f"/jobs/{failed_cells.pk}/")
    marker(page)
    cell = page.locator("td.cell-error").first
    button = cell.locator("button.retry")
    expect(button).to_have_accessible_name("Retry (1/3) demo-flaky, question 1")
    button.click()
    expect(page.locator("#toasts")).to_contain_text("Retry started: demo-flaky × question 1.")
    expect(page.locator("td.cell-completed")).to_have_count(3, timeout=15_000)
    expect(page.locator("#job-summary")).to_contain_text("3 completed")
    assert_not_reloaded(page)


def test_retry_all_failed_previews_then_retries_every_failed_cell(page, failed_cells):
    page.goto(f"/jobs/{failed_cells.pk}/")
    page.get_by_role("link", name="Retry all failed").click()
    preview = page.locator("#retry-preview")
    expect(preview).to_contain_text("2 failed: 2 error.")
    preview.get_by_label("Reason (optional)").fill("provider fixed the 400s")
    preview.get_by_role("button", name="Retry 2").click()
    expect(page.locator("#bulk-panel")).to_contain_text("Retried 2.")
    expect(page.locator("td.cell-completed")).to_have_count(4, timeout=15_000)
    assert set(Operation.objects.filter(is_retry=True).values_list("retry_reason", flat=True)) \
        == {"provider fixed the 400s"}


def test_the_job_grid_works_without_javascript(no_js_page, failed_cells):
    page = no_js_page
    page.goto(f"/jobs/{failed_cells.pk}/")
    page.locator("td.cell-error button.retry").first.click()
    expect(page.locator("#toasts")).to_contain_text("Retry started")
    page.get_by_role("link", name="Retry all failed").click()
    expect(page.locator("#retry-preview")).to_contain_text("1 failed: 1 error.")
    page.get_by_role("button", name="Retry 1").click()
    expect(page.locator("#toasts")).to_contain_text("Retried 1.")
    wait_for(lambda: settled(Operation.objects.filter(input__job_id=failed_cells.pk)), 20,
             what="the retries")
    page.reload()
    expect(page.locator("td.cell-completed")).to_have_count(4)
    page.locator("td a.history-link").first.click()
    expect(page.get_by_role("heading", name="Attempts")).to_be_visible()


def test_a_new_job_from_the_form_fills_its_grid(page, live):
    page.goto("/jobs/new")
    page.get_by_label("Title").fill("Two regions")
    page.get_by_label("us-east").check()
    page.get_by_label("eu-west").check()
    page.get_by_label("Questions, one per line").fill("First?\nSecond?")
    page.get_by_role("button", name="Start the job").click()
    expect(page.locator("td.cell-completed")).to_have_count(4, timeout=20_000)
    assert Job.objects.get().regions == ["us-east", "eu-west"]


def test_the_retry_button_can_be_reached_and_pressed_with_the_keyboard(page, failed_cells):
    page.goto(f"/jobs/{failed_cells.pk}/")
    target = page.locator("td.cell-error button.retry").first
    for _ in range(80):
        page.keyboard.press("Tab")
        if target.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the Retry button")
    outline = target.evaluate("b => getComputedStyle(b).outlineStyle + ' ' + "
                              "getComputedStyle(b).outlineWidth")
    assert outline.split()[0] != "none" and outline.split()[1] != "0px", outline
    page.keyboard.press("Enter")
    expect(page.locator("#toasts")).to_contain_text("Retry started")


# --- batches -----------------------------------------------------------------------------------

@pytest.fixture
def failed_feedback(live, alice):
    live.faults(region="asia-pacific", error_rate=1.0, statuses=[500])  # through 4 attempts
    batch = create_batch(alice, title="Essays", region="asia-pacific",
                         essays=[essay(i) for i in range(3)])
    request_pipeline(batch, "cj_assessment")
    wait_for(lambda: Operation.objects.filter(kind="batches.ai_feedback",
                                              status=Status.FAILED).count() == 3, 40,
             what="the AI feedback to fail")
    live.faults(region="asia-pacific", error_rate=0.0)
    return batch


def test_retry_phase_with_a_reason_continues_to_the_ranking(page, failed_feedback):
    page.goto(f"/batches/{failed_feedback.pk}/")
    marker(page)
    form = page.locator("form.retry-phase")
    reason = form.get_by_label("Reason (optional)")
    reason.fill("x" * 42)
    expect(form).to_contain_text("42 / 500")  # the live counter
    reason.fill("the provider is back")
    form.get_by_role("button", name="Retry phase").click()
    expect(page.locator("#toasts")).to_contain_text("Retrying 3 of AI feedback.")
    expect(page.get_by_role("heading", name="Ranking")).to_be_visible(timeout=30_000)
    expect(page.locator("ol.ranking li")).to_have_count(3)
    expect(page.locator("#batch-grid")).to_contain_text("after a retry: “the provider is back”")
    assert_not_reloaded(page)


def test_the_batch_page_works_without_javascript(no_js_page, failed_feedback):
    page = no_js_page
    page.goto(f"/batches/{failed_feedback.pk}/")
    page.get_by_label("Reason (optional)").fill("again")
    page.get_by_role("button", name="Retry phase").click()
    expect(page.locator("#toasts")).to_contain_text("Retrying 3 of AI feedback.")
    wait_for(lambda: Operation.objects.filter(kind="batches.cj_assessment",
                                              status=Status.COMPLETED).exists(), 30,
             what="the ranking")
    page.reload()
    expect(page.get_by_role("heading", name="Ranking")).to_be_visible()


def test_a_new_batch_from_pasted_essays(page, live):
    page.goto("/batches/new")
    page.get_by_label("Title").fill("Pasted")
    page.get_by_label("Essays, separated by").fill(f"{essay(0)}\n---\n{essay(1)}")
    page.get_by_role("button", name="Create the batch").click()
    expect(page.get_by_role("heading", name="Ranking")).to_be_visible(timeout=30_000)


# --- outages -----------------------------------------------------------------------------------

def test_a_job_cell_waits_for_its_region_and_then_finishes_by_itself(page, live, alice):
    # eu-west answers 503 for 12 s: its gate opens, the cells wait, a probe finds it back.
    live.faults(region="eu-west", error_rate=1.0, statuses=[503], for_seconds=12)
    job = create_job(alice, title="Outage", model="m", regions=["eu-west"],
                     questions=[f"Question {i}?" for i in range(6)])
    page.goto(f"/jobs/{job.pk}/")
    marker(page)
    waiting = page.locator("td.cell-waiting").first
    expect(waiting).to_contain_text("Waiting: the AI service in eu-west is not answering",
                                    timeout=20_000)
    expect(waiting).to_contain_text("This continues by itself when it is back.")
    expect(waiting.locator("button")).to_have_count(0)  # nothing to retry
    expect(page.locator("td.cell-completed")).to_have_count(6, timeout=60_000)
    assert_not_reloaded(page)
    assert not Operation.objects.filter(input__job_id=job.pk, is_retry=True).exists()


def test_staff_hold_and_release_a_gate_from_the_gates_page_without_javascript(no_js_page, alice):
    alice.is_staff = True
    alice.save()
    no_js_page.set_viewport_size({"width": 390, "height": 844})
    no_js_page.goto("/operations/gates/")
    no_js_page.get_by_label("Dependency").fill("inference:asia-pacific")
    no_js_page.get_by_label("Why (kept with the gate's history)").fill("provider maintenance")
    no_js_page.get_by_role("button", name="Hold (open by hand)").click()
    expect(no_js_page.locator("#toasts")).to_contain_text("inference:asia-pacific is held")
    expect(no_js_page.get_by_role("row", name="inference:asia-pacific")).to_contain_text(
        "held by staff")
    no_js_page.get_by_label("Dependency").fill("inference:asia-pacific")
    no_js_page.get_by_label("Why (kept with the gate's history)").fill("maintenance over")
    no_js_page.get_by_role("button", name="Release (close by hand)").click()
    expect(no_js_page.locator("#toasts")).to_contain_text("is released")
    expect(no_js_page.get_by_role("row", name="inference:asia-pacific")).to_contain_text(
        "Closed")


def test_waiting_work_reads_as_waiting_on_the_interview_batch_and_operation_pages(page, alice):
    from operations import gates

    gates.hold("inference:eu-west", by=None, reason="provider maintenance")
    session = start_session(alice, "Queues", region="eu-west")
    batch = create_batch(alice, title="Essays", essays=[essay(0)], region="eu-west")
    request_pipeline(batch, "ai_feedback")
    wait_for(lambda: Operation.objects.filter(owner=alice, status=Status.WAITING).count() == 2,
             30, what="the question and the feedback to wait")
    question = session.turns.get().question_current
    for path in (f"/interviews/{session.pk}/", f"/batches/{batch.pk}/",
                 f"/operations/{question.pk}/"):
        page.goto(path)
        note = page.get_by_text("Waiting: the AI service in eu-west is not answering").first
        expect(note).to_be_visible()
        expect(page.get_by_role("button", name="Retry")).to_have_count(0)


@pytest.fixture
def finished_work(alice):
    """Two kinds with finished work, counted into the rollups (as the dispatcher does)."""
    from operations import rollups

    alice.is_staff = True
    alice.save()
    for _ in range(3):
        OperationFactory(owner=alice, failed=True, input={"region": "eu-west"})
    OperationFactory(owner=alice, kind="diagnostics.sleep", status="completed", attempt_count=1,
                     finished_at=timezone.now())
    rollups.fold_all()


def test_the_metrics_chart_switches_kinds_in_place(page, finished_work):
    page.goto("/operations/metrics/")
    rows = page.get_by_role("region", name="Retry figures per kind").locator("tbody tr")
    expect(rows.first).to_contain_text("diagnostics.flaky")  # the worst kind first (0 %)
    expect(page.locator("#metrics-chart h2")).to_contain_text("per hour")
    marker(page)
    page.get_by_label("Kind", exact=True).select_option("diagnostics.sleep")
    expect(page.locator("#metrics-chart h2")).to_contain_text("Sleep")
    assert_not_reloaded(page)


def test_the_metrics_window_works_without_javascript_at_phone_width(no_js_page, finished_work):
    no_js_page.set_viewport_size({"width": 390, "height": 844})
    no_js_page.goto("/operations/metrics/")
    no_js_page.get_by_label("Window").select_option("7d")
    no_js_page.get_by_label("Split by").select_option("region")
    no_js_page.get_by_role("button", name="Show", exact=True).click()
    expect(no_js_page.get_by_role("heading", name="Finished in the last 7 days")).to_be_visible()
    expect(no_js_page.get_by_role("row", name="eu-west")).to_contain_text("0 %")
    no_js_page.get_by_label("Kind", exact=True).select_option("diagnostics.sleep")
    no_js_page.get_by_role("button", name="Show chart").click()
    expect(no_js_page.locator("#metrics-chart h2")).to_contain_text("per day")
    expect(no_js_page.locator("#metrics-chart h2")).to_contain_text("Sleep")
    assert_fits_a_phone(no_js_page)

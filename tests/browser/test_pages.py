"""Every page, in a real browser: no serious or critical axe-core violation, nothing scrolls
sideways at 390×844 and every button stays reachable, the live regions are announced, no
request leaves the host and no console error is logged (the `page` fixture checks those)."""
import pytest
from django.core.files import File
from playwright.sync_api import expect

from batches.pipeline import request_pipeline
from batches.services import create_batch
from executions.services import create_job
from imports.passes import accept_upload
from interviews.services import start_session
from operations.models import Notification, Operation
from tests.batches_helpers import essay
from tests.browser.helpers import assert_accessible, assert_fits_a_phone, settled
from tests.factories import AttemptFactory, OperationFactory
from webhooks.models import Endpoint
from tests.imports_helpers import SAMPLE
from tests.processes import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def everything(live, alice):
    """Something on every page: failures with Retry buttons included."""
    alice.is_staff = True
    alice.save()
    live.faults(region="demo-flaky", error_rate=1.0, statuses=[400])
    with open(SAMPLE, "rb") as sample:
        profile = accept_upload(alice, File(sample), name="export.json",
                                fault={"at": 5, "error": "permanent", "retry_numbers": [0]})
    session = start_session(alice, "Queues", region="demo-flaky")
    job = create_job(alice, title="Regions", model="m", regions=["us-east", "demo-flaky"],
                     questions=["What is a lease?", "A question long enough to wrap in a "
                                "narrow column on a phone screen, to be sure it folds?"])
    batch = create_batch(alice, title="Essays", region="demo-flaky",
                         essays=[essay(i) for i in range(3)] + ["Too short."])
    request_pipeline(batch, "cj_assessment")
    failed = OperationFactory(owner=alice, failed=True)
    long = long_failure(alice)
    endpoint = Endpoint.objects.create(
        owner=alice, url="https://hooks.example.com/a-rather-long-path/for-rebound-events",
        event_types=["operation.failed"], secret="whsec_x", enabled=False,
        disabled_reason="answered 410 Gone")
    wait_for(lambda: settled(Operation.objects.filter(owner=alice)), 40,
             what="everything to settle")
    assert Notification.objects.filter(owner=alice).exists()
    execution = job.executions.get(region="demo-flaky", question_index=0)
    essay_id = batch.essays.first().pk
    return {"session": session, "job": job, "batch": batch, "failed": failed,
            "execution": execution, "essay_id": essay_id, "profile": profile, "long": long,
            "endpoint": endpoint}


def long_failure(owner):
    """Long content: a failure with a long error after a dozen attempts, each with its error."""
    words = "The provider answered with an error that goes on and on about what went wrong "
    operation = OperationFactory(owner=owner, failed=True, attempt_count=12,
                                 error_message=(words * 6)[:490])
    for number in range(2, 13):
        AttemptFactory(operation=operation, number=number, outcome="transient",
                       trigger="auto", error_code="ai_unavailable",
                       error_message=(words * 6)[:480], delay_seconds=2.0 ** number,
                       worker=f"host-{number}.example:4242:1")
    return operation


def pages(data) -> list[str]:
    job, batch = data["job"], data["batch"]
    return ["/", "/operations/", f"/operations/{data['failed'].pk}/",
            f"/operations/{data['long'].pk}/", "/notifications/",
            "/interviews/", f"/interviews/{data['session'].pk}/", "/jobs/", "/jobs/new",
            f"/jobs/{job.pk}/", f"/jobs/{job.pk}/retry-failed",
            f"/jobs/{job.pk}/cells/{data['execution'].pk}/history", "/batches/",
            "/batches/new", f"/batches/{batch.pk}/",
            f"/batches/{batch.pk}/phases/nlp/essays/{data['essay_id']}/history",
            "/operations/metrics/", "/operations/gates/", "/webhooks/", "/webhooks/new",
            data["endpoint"].get_absolute_url()]


def test_every_page_is_accessible_at_desktop_and_phone_width_and_fits_a_phone(page, everything):
    for path in pages(everything):
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(path)
        assert_accessible(page)
        assert_fits_a_phone(page)
        assert_accessible(page)  # again at 390 px, where wide tables scroll in their region


def test_the_sign_in_page_is_accessible_and_fits_a_phone(browser, live, guard):
    page = browser.new_page(base_url=live.url)
    guard.watch(page)
    page.goto("/accounts/login/")
    assert_accessible(page)
    assert_fits_a_phone(page)
    assert_accessible(page)
    assert guard.errors == [] and guard.foreign == []
    page.close()


def test_a_scrollable_table_is_reached_and_scrolled_by_keyboard(page, everything):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/operations/{everything['long'].pk}/")
    region = page.get_by_role("region", name="Attempts")
    expect(region).to_be_visible()
    for _ in range(40):
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == "Attempts":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Attempts"
    assert region.evaluate("e => e.scrollWidth > e.clientWidth")  # it does scroll at 390 px
    page.keyboard.press("ArrowRight")
    expect(region).not_to_have_js_property("scrollLeft", 0)


def test_the_api_docs_load_everything_from_rebound(page, live):
    page.goto("/api/v1/docs/")
    expect(page.get_by_text("Rebound API").first).to_be_visible(timeout=15_000)


def test_progress_and_toasts_are_announced(page, everything):
    page.goto("/")
    expect(page.locator("#toasts")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#full-pass-banner")).to_have_attribute("aria-live", "polite")
    page.goto(f"/jobs/{everything['job'].pk}/")
    expect(page.locator("#job-summary [aria-live]")).to_have_count(1)
    expect(page.locator("#bulk-panel")).to_have_attribute("aria-live", "polite")
    page.goto(f"/batches/{everything['batch'].pk}/")
    expect(page.locator("#batch-grid [aria-live]").first).to_be_attached()


def test_focus_is_visible_on_links_and_buttons(page, everything):
    page.goto(f"/operations/{everything['failed'].pk}/")
    page.keyboard.press("Tab")
    style = page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                          "return [s.outlineStyle, s.outlineWidth]; }")
    assert style[0] != "none" and style[1] != "0px", style


def test_notifications_are_marked_read_in_place_and_without_javascript(page, no_js_page,
                                                                        everything):
    page.goto("/notifications/")
    count = page.locator("#unread-count").inner_text()
    page.get_by_role("button", name="Mark as read").first.click()
    expect(page.locator("#unread-count")).not_to_have_text(count)
    no_js_page.goto("/notifications/")
    no_js_page.get_by_role("button", name="Mark all as read").click()
    expect(no_js_page.locator("#toasts")).to_contain_text("as read")
    expect(no_js_page.locator("#unread-count")).to_have_class("badge empty")


def test_the_operation_page_retries_with_and_without_javascript(page, no_js_page, alice):
    first = OperationFactory(owner=alice, failed=True, input={"succeed_on_retry": 1})
    page.goto(f"/operations/{first.pk}/")
    expect(page.get_by_role("heading", name="Flaky failed")).to_be_visible()
    page.get_by_role("button", name="Retry (1/3)").click()
    expect(page.locator("#status-panel")).to_contain_text("Done", timeout=15_000)
    second = OperationFactory(owner=alice, failed=True, input={"succeed_on_retry": 1})
    no_js_page.goto(f"/operations/{second.pk}/")
    no_js_page.get_by_role("button", name="Retry (1/3)").click()
    expect(no_js_page.locator("#toasts")).to_contain_text("Retry started.")

"""The dashboard in a real browser: the full pass's failure banner, Retry deep memory
("Retrying…", then progress, then the memory, never reloading), uploads good and bad, and each
promise the imports page makes."""
import pytest
from django.core.files import File
from playwright.sync_api import expect

from imports.models import Profile
from imports.passes import accept_upload
from operations.models import Operation, Status
from tests.browser.helpers import assert_accessible, assert_fits_a_phone, assert_not_reloaded, marker
from tests.imports_helpers import SAMPLE, zip_of
from tests.processes import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
AMBER = "rgb(180, 83, 9)"


def upload_sample(user, **fault):
    with open(SAMPLE, "rb") as sample:
        return accept_upload(user, File(sample), name="chatgpt-export.json", fault=fault or None)


def full_pass_status(profile) -> str:
    return Profile.objects.get(pk=profile.pk).full_pass_status


@pytest.fixture
def failed(alice):
    """The sample export whose full pass failed for good at conversation 25; a retry reads
    the rest slowly enough to watch."""
    profile = upload_sample(alice, at=25, error="permanent", retry_numbers=[0], pace=0.15,
                            pace_from=25)
    wait_for(lambda: full_pass_status(profile) == "failed", 30, what="the full pass to fail")
    return profile


def slow_network(page, latency_ms: int):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency_ms,
                                                   "downloadThroughput": -1,
                                                   "uploadThroughput": -1})
    return cdp


def test_signing_in_with_the_form_leads_to_the_dashboard(browser, live):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from tests.factories import UserFactory

    user = UserFactory(username="bob")
    user.password = PBKDF2PasswordHasher().encode("a long passphrase", "saltsalt", iterations=1000)
    user.save()
    page = browser.new_page(base_url=live.url)
    page.goto("/")
    expect(page).to_have_url(f"{live.url}/accounts/login/?next=/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("a long passphrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.close()


def test_the_failure_banner_says_what_failed_and_that_the_rest_still_works(page, failed):
    page.goto("/")
    banner = page.locator("#full-pass-banner")
    expect(banner.get_by_role("heading", name="Building your deep memory failed")).to_be_visible()
    expect(banner).to_contain_text("everything read so far still work")
    expect(banner).to_contain_text("Stopped at 25 / 43 conversations")
    button = banner.get_by_role("button", name="Retry deep memory (1/3)")
    expect(button).to_have_css("background-color", AMBER)
    assert_accessible(page)
    assert_fits_a_phone(page)


def test_retry_deep_memory_reads_retrying_then_progress_then_the_memory_without_reloading(
        page, failed):
    page.goto("/")
    marker(page)
    button = page.locator("#full-pass-banner button.retry")
    expect(button).to_have_text("Retry deep memory (1/3)", use_inner_text=True)
    cdp = slow_network(page, 600)
    button.click()
    expect(button).to_be_disabled()
    expect(button).to_have_text("Retrying…", use_inner_text=True)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                   "downloadThroughput": -1,
                                                   "uploadThroughput": -1})
    banner = page.locator("#full-pass-banner")
    expect(banner.get_by_text("Resuming…")).to_be_visible()  # never "pending"
    expect(page.locator("#toasts")).to_contain_text("Retry started.")
    expect(banner.locator("progress")).to_be_visible(timeout=10_000)
    expect(banner.get_by_role("heading", name="Memory")).to_be_visible(timeout=20_000)
    assert_not_reloaded(page)


def test_the_banner_can_be_dismissed_and_comes_back_when_the_work_fails_again(page, alice,
                                                                               failed):
    page.goto("/")
    page.get_by_role("button", name="Dismiss this message").click()
    expect(page.locator("#full-pass-banner")).to_be_empty()
    page.reload()
    expect(page.get_by_role("heading", name="Building your deep memory failed")).to_have_count(0)
    from operations.services import retry_operation

    operation = Profile.objects.get(pk=failed.pk).full_pass
    Operation.objects.filter(pk=operation.pk).update(input={
        **operation.input, "fault": {"at": 30, "error": "permanent", "retry_numbers": [1]}})
    retry_operation(operation.pk, by=alice, channel="api")
    wait_for(lambda: full_pass_status(failed) == "failed", 30, what="the retry to fail")
    page.reload()
    expect(page.get_by_role("heading", name="Building your deep memory failed")).to_be_visible()


def test_a_final_failure_is_listed_on_the_dashboard(page, failed):
    page.goto("/")
    failures = page.locator("section", has=page.get_by_role("heading", name="Failed for good"))
    expect(failures).to_contain_text("Deep memory (full pass) failed")
    expect(page.locator("#unread-count")).to_contain_text("1")


def test_a_broken_upload_is_refused_next_to_the_form(page):
    page.goto("/")
    page.get_by_label("The export ZIP").set_input_files({
        "name": "export.zip", "mimeType": "application/zip", "buffer": b"PK\x03\x04 not a zip"})
    page.get_by_role("button", name="Upload").click()
    alert = page.locator("form").locator("xpath=..").get_by_role("alert")
    expect(alert).to_contain_text("damaged")
    assert not Profile.objects.filter(export_key__gt="").exists()


def test_a_good_upload_shows_the_quick_pass_then_the_full_pass_finishing(page):
    page.goto("/")
    page.get_by_label("The export ZIP").set_input_files(
        {"name": "conversations.zip", "mimeType": "application/zip",
         "buffer": zip_of({"conversations.json": SAMPLE.read_bytes()})})
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#toasts")).to_contain_text("Export received")
    marker(page)
    expect(page.locator("#export-summary")).to_contain_text("43 conversations", timeout=15_000)
    expect(page.get_by_role("heading", name="Memory")).to_be_visible(timeout=20_000)
    assert_not_reloaded(page)


def test_a_full_pass_started_before_the_count_shows_its_progress_once_the_total_is_known(
        page, alice):
    profile = upload_sample(alice, quick_pace=0.05, pace=0.15)
    page.goto("/")
    progress = page.locator("#full-pass-banner progress")
    expect(progress).to_have_attribute("max", "43", timeout=15_000)
    expect(page.locator("#full-pass-banner")).to_contain_text("left")  # the estimate
    assert full_pass_status(profile) == "processing"  # seen while it still ran


def test_an_automatic_retry_that_starts_no_longer_shows_the_previous_error(page, alice):
    profile = upload_sample(alice, at=10, error="transient", attempts=[1], pace=0.2,
                            pace_from=10)
    page.goto("/")
    wait_for(lambda: Operation.objects.filter(pk=profile.full_pass_operation_id, attempt_count=2,
                                              status=Status.PROCESSING).exists(), 20,
             what="the automatic retry to start")
    expect(page.locator("#full-pass-banner progress")).to_be_visible(timeout=10_000)
    body = page.request.get("/api/v1/imports/profile").json()
    assert body["full_pass"]["status"] == "processing"
    assert body["full_pass"]["operation"]["error"] is None
    first = Operation.objects.get(pk=profile.full_pass_operation_id).attempts.get(number=1)
    assert first.error_code == "import_interrupted"  # the attempt keeps it


def test_uploads_from_the_page_are_throttled_like_the_api(page):
    page.goto("/")
    for n in range(4):
        page.get_by_label("The export ZIP").set_input_files(
            {"name": "e.json", "mimeType": "application/json", "buffer": b"{"})
        page.get_by_role("button", name="Upload").click()
        page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("Too many requests. Try again in")


def test_retries_from_the_page_are_throttled_like_the_api(page, failed):
    page.goto("/")
    import uuid

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for _ in range(20):  # REBOUND_RETRY_THROTTLE is 20/min for the stack; refusals count too
        page.request.post(f"/api/v1/operations/{uuid.uuid4()}/retry",
                          headers={"X-CSRFToken": token})
    page.get_by_role("button", name="Retry deep memory").click()
    expect(page.locator("#toasts")).to_contain_text("Too many requests. Try again in")


def test_the_dashboard_works_without_javascript(no_js_page, failed):
    page = no_js_page
    page.goto("/")
    page.get_by_role("button", name="Retry deep memory (1/3)").click()
    expect(page.locator("#toasts")).to_contain_text("Retry started.")
    expect(page.get_by_text("Resuming…")).to_be_visible()
    wait_for(lambda: full_pass_status(failed) == "complete", 30, what="the retried pass")
    page.reload()
    expect(page.get_by_role("heading", name="Memory")).to_be_visible()
    page.get_by_label("The export ZIP").set_input_files(
        {"name": "e.json", "mimeType": "application/json", "buffer": b"[]"})
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_be_visible()


def test_the_header_folds_on_a_phone(page):
    page.goto("/")
    assert_fits_a_phone(page)
    expect(page.get_by_role("link", name="Notifications")).to_be_in_viewport()

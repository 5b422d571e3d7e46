"""The full-pass banner: progress while processing, amber with Retry when failed, gone when done."""
import io
import json

import pytest
from django.core.files import File

from imports.passes import accept_upload
from operations.models import Operation, Status
from tests.imports_helpers import sample_bytes
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
BANNER = "/?part=banner"


@pytest.fixture(autouse=True)
def storage(export_storage):
    return export_storage


@pytest.fixture
def profile(user):
    return accept_upload(user, File(io.BytesIO(sample_bytes()), name="export.json"),
                         fault={"at": 25, "error": "permanent", "retry_numbers": [0]})


def test_processing_shows_progress_and_polls(web, profile):
    Operation.objects.filter(pk=profile.full_pass_operation_id).update(
        status=Status.PROCESSING, progress_done=12, progress_total=43)
    banner = web.get(BANNER, **HTMX).content.decode()
    assert banner.lstrip().startswith('<section id="full-pass-banner"')
    assert "12 / 43 conversations" in banner and "<progress" in banner
    assert 'hx-trigger="every 2s"' in banner


def test_failed_shows_the_amber_banner_with_retry_deep_memory(web, profile):
    run_until_settled(profile.quick_pass_operation)
    run_until_settled(profile.full_pass_operation)
    page = web.get("/").content.decode()
    assert "banner-failed" in page and "What to do:" in page
    assert "Retry deep memory (1/3)" in page and "Retrying…" in page
    assert "Last failed" in page and "Stopped at 25 / 43" in page
    assert 'hx-trigger="every 2s"' not in page


def test_retry_deep_memory_turns_the_banner_back_to_progress(web, profile):
    run_until_settled(profile.quick_pass_operation)
    failed = run_until_settled(profile.full_pass_operation)
    response = web.post("/imports/full-pass/retry", **HTMX)
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    banner = response.content.decode()
    assert "Building your deep memory" in banner and 'hx-trigger="every 2s"' in banner
    child = Operation.objects.get(parent=failed)
    assert child.channel == "web"
    run_until_settled(child)
    done = web.get(BANNER, **HTMX).content.decode()
    assert "hx-trigger" not in done and "Building" not in done and "# MEMORY" in done
    page = web.get("/").content.decode()
    assert "# MEMORY" in page and "django" in page


def test_retry_button_works_without_javascript(web, profile):
    run_until_settled(profile.quick_pass_operation)
    run_until_settled(profile.full_pass_operation)
    response = web.post("/imports/full-pass/retry")
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_second_click_is_refused_with_a_toast(web, profile):
    run_until_settled(profile.quick_pass_operation)
    run_until_settled(profile.full_pass_operation)
    web.post("/imports/full-pass/retry", **HTMX)
    Operation.objects.filter(parent=profile.full_pass_operation).update(status=Status.FAILED)
    other = web.post(f"/operations/{profile.full_pass_operation_id}/retry", **HTMX)
    assert json.loads(other["HX-Trigger"])["toast"]["level"] == "error"


@pytest.fixture
def a_pass_ends_mid_read(monkeypatch):
    """Runs `operation` to its end the first time the page or the API looks up a pass: the
    moment a worker finishes it between two reads of one request."""
    original = Operation.latest_in_chain

    def arm(operation):
        def latest_in_chain(self):
            if not ended:
                ended.append(run_until_settled(operation))
            return original(self)
        ended = []
        monkeypatch.setattr(Operation, "latest_in_chain", latest_in_chain)
        return ended
    return arm


def test_a_quick_pass_ending_while_the_page_is_read_shows_its_counts(web, profile,
                                                                       a_pass_ends_mid_read):
    ended = a_pass_ends_mid_read(profile.quick_pass_operation)
    page = web.get("/").content.decode()
    assert ended[0].status == Status.COMPLETED
    assert "43 conversations" in page and "No conversations were counted" not in page


def test_a_full_pass_ending_while_the_api_answers_comes_with_its_memory(api, user,
                                                                         a_pass_ends_mid_read):
    profile = accept_upload(user, File(io.BytesIO(sample_bytes()), name="export.json"))
    run_until_settled(profile.quick_pass_operation)
    ended = a_pass_ends_mid_read(profile.full_pass_operation)
    body = api.get("/api/v1/imports/profile").json()
    assert ended[0].status == Status.COMPLETED
    assert body["full_pass"]["status"] == "complete" and "# MEMORY" in body["memory_markdown"]

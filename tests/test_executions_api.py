"""Executions through the API, against the real local inference service with a failing region:
jobs, the grid, a cell's history, per-question retry (n/3) and "retry all failed"."""
import pytest
from django.core.cache import cache

from executions.models import Execution, Job
from operations.models import Operation, Status
from tests.factories import UserFactory
from tests.executions_helpers import QUESTIONS, create, drain
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db
def cells(api, job_id):
    return {(c["region"], c["question_index"]): c
            for c in api.get(f"/api/v1/jobs/{job_id}/executions/all").json()}


@pytest.fixture
def finished(ai, api):
    """A job whose asia-pacific cells failed (500 until the automatic budget was spent)."""
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[500])
    job_id = create(api).json()["id"]
    drain(job_id)
    ai.faults(region="asia-pacific", error_rate=0.0)
    return job_id


def retry(api, cell, reason=None, **headers):
    body = {"region": cell["region"], "question_index": cell["question_index"]}
    if reason is not None:
        body["reason"] = reason
    return api.post(f"/api/v1/executions/{cell['id']}/retry-question", body, format="json",
                    **headers)


# --- creating a job ---------------------------------------------------------------------------

def test_creating_a_job_answers_201_with_one_execution_per_region_and_question(ai, api):
    response = create(api)
    assert response.status_code == 201
    body = response.json()
    assert body["regions"] == ["us-east", "asia-pacific"] and body["questions"] == QUESTIONS
    assert sorted((e["region"], e["question_index"]) for e in body["executions"]) == [
        ("asia-pacific", 0), ("asia-pacific", 1), ("us-east", 0), ("us-east", 1)]
    assert {e["status"] for e in body["executions"]} == {"pending"}
    assert body["progress"] == {"done": 0, "total": 4, "percent": 0}


@pytest.mark.parametrize("field, value, says", [
    ("regions", [], "empty"),
    ("regions", ["us-east"] * 21, "no more than 20"),
    ("regions", ["mars-north"], "Unknown region 'mars-north'"),
    ("regions", ["us-east", "us-east"], "once"),
    ("questions", [], "empty"),
    ("questions", ["q"] * 201, "no more than 200"),
    ("questions", ["x" * 4001], "no more than 4000"),
    # Limits hold for what was sent: leading Unicode whitespace is not trimmed off first.
    ("title", "\x85" + "t" * 200, "no more than 200"),
    ("questions", ["\u2028" + "x" * 4000], "no more than 4000"),
])
def test_a_bad_job_is_a_400_with_a_field_error_and_creates_nothing(api, field, value, says):
    response = create(api, **{field: value})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert says in str(response.json()["errors"][field])
    assert not Job.objects.exists()


def test_a_job_starts_at_most_the_configured_number_of_cells_at_once(settings, api):
    settings.REBOUND = {**settings.REBOUND, "JOB_CONCURRENCY": 3}
    job_id = create(api, questions=[f"Q{i}" for i in range(5)]).json()["id"]
    assert Execution.objects.filter(job_id=job_id, operation__isnull=False).count() == 3


def test_when_a_cell_settles_the_next_waiting_cell_starts(settings, ai, api):
    settings.REBOUND = {**settings.REBOUND, "JOB_CONCURRENCY": 2}
    job_id = create(api, questions=["Q0", "Q1", "Q2"]).json()["id"]
    started = Execution.objects.filter(job_id=job_id, operation__isnull=False)
    run_until_settled(started.first().operation)
    assert started.count() == 3
    drain(job_id)
    assert started.count() == 6
    assert {c["status"] for c in cells(api, job_id).values()} == {"completed"}


# --- reading the grid -------------------------------------------------------------------------

def test_the_grid_shows_answers_and_failures_with_their_retry_fields(api, finished):
    grid = cells(api, finished)
    done = grid[("us-east", 0)]
    assert done["status"] == "completed" and "us-east" in done["answer"]
    assert done["error"] is None and done["retry_count"] == 0 and done["max_retries"] == 3
    failed = grid[("asia-pacific", 1)]
    assert failed["status"] == "failed" and failed["answer"] is None
    assert failed["error"]["code"] == "ai_unavailable"
    assert failed["original_error"] == {"code": "ai_unavailable",
                                        "message": failed["error"]["message"]}
    assert failed["retry_count"] == 0 and failed["last_retry_at"] is None


def test_the_job_reports_counts_and_progress(api, finished):
    body = api.get(f"/api/v1/jobs/{finished}/").json()
    assert body["counts"]["completed"] == 2 and body["counts"]["failed"] == 2
    assert body["progress"] == {"done": 4, "total": 4, "percent": 100}
    [listed] = api.get("/api/v1/jobs/").json()["results"]
    assert listed["id"] == finished and listed["counts"] == body["counts"]


@pytest.mark.parametrize("statuses, status, code", [
    ([408], "timeout", "ai_timeout"), ([400], "error", "ai_rejected"),
    ([500], "failed", "ai_unavailable")])
def test_a_failed_cell_says_timeout_error_or_failed(ai, api, statuses, status, code):
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=statuses)
    job_id = create(api, questions=["Q0"]).json()["id"]
    drain(job_id)
    cell = cells(api, job_id)[("asia-pacific", 0)]
    assert (cell["status"], cell["error"]["code"]) == (status, code)
    attempts = api.get(f"/api/v1/executions/{cell['id']}/details").json()["attempts"]
    assert len(attempts) == (1 if status == "error" else 4)


def test_details_list_every_attempt_oldest_first_and_each_manual_retry(api, finished):
    cell = cells(api, finished)[("asia-pacific", 0)]
    retry(api, cell, reason="region is back")
    drain(finished)
    details = api.get(f"/api/v1/executions/{cell['id']}/details").json()
    assert details["question"] == QUESTIONS[0] and details["status"] == "completed"
    assert [(a["retry_number"], a["number"]) for a in details["attempts"]] == [
        (0, 1), (0, 2), (0, 3), (0, 4), (1, 1)]
    assert [a["delay_before_next"] is None for a in details["attempts"]] == [
        False, False, False, True, True]
    [entry] = details["retry_history"]
    assert (entry["by"], entry["channel"], entry["reason"], entry["outcome"]) == (
        "alice", "api", "region is back", "completed")


# --- retrying one question --------------------------------------------------------------------

def test_retry_question_answers_202_with_the_cell_pending_and_counted(api, finished):
    cell = cells(api, finished)[("asia-pacific", 1)]
    response = retry(api, cell, reason="cold start")
    assert response.status_code == 202
    body = response.json()
    assert (body["id"], body["status"], body["retry_count"]) == (cell["id"], "pending", 1)
    assert body["last_retry_at"] is not None
    assert body["original_error"]["code"] == "ai_unavailable"


def test_retry_question_for_another_cell_is_a_400_cell_mismatch(api, finished):
    cell = cells(api, finished)[("asia-pacific", 1)]
    response = api.post(f"/api/v1/executions/{cell['id']}/retry-question",
                        {"region": "us-east", "question_index": 1}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "cell_mismatch"
    assert not Operation.objects.filter(is_retry=True).exists()


def test_retry_question_of_a_completed_cell_is_a_409_not_failed(api, finished):
    response = retry(api, cells(api, finished)[("us-east", 0)])
    assert response.status_code == 409 and response.json()["code"] == "not_failed"


def test_retry_question_while_its_retry_is_pending_is_a_409_already_retried(api, finished):
    cell = cells(api, finished)[("asia-pacific", 0)]
    assert retry(api, cell).status_code == 202
    again = retry(api, cell)
    assert again.status_code == 409 and again.json()["code"] == "already_retried"


def test_derived_fields_after_0_1_and_3_retries_and_the_4th_is_a_429(ai, api, finished):
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[500])
    cell = cells(api, finished)[("asia-pacific", 0)]
    assert cell["retry_count"] == 0
    for n in (1, 2, 3):
        assert retry(api, cell, reason=f"try {n}").status_code == 202
        drain(finished)
        cell = cells(api, finished)[("asia-pacific", 0)]
        assert cell["retry_count"] == n and cell["status"] == "failed"
        assert cell["original_error"]["code"] == "ai_unavailable"
    fourth = retry(api, cell)
    assert fourth.status_code == 429 and fourth.json()["code"] == "retry_limit_reached"
    history = api.get(f"/api/v1/executions/{cell['id']}/details").json()["retry_history"]
    assert [h["reason"] for h in history] == ["try 1", "try 2", "try 3"]
    assert Operation.objects.filter(is_retry=True, input__execution_id=cell["id"]).count() == 3


def test_retry_question_replays_with_the_same_idempotency_key(api, finished):
    cell = cells(api, finished)[("asia-pacific", 1)]
    first = retry(api, cell, HTTP_IDEMPOTENCY_KEY="k1")
    again = retry(api, cell, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert Operation.objects.filter(is_retry=True).count() == 1


def test_retry_question_is_throttled_with_its_own_code(settings, api, finished):
    settings.REBOUND = {**settings.REBOUND, "RETRY_THROTTLE": "1/min"}
    cache.clear()
    cell = cells(api, finished)[("asia-pacific", 1)]
    retry(api, cell)
    response = retry(api, cell)
    assert response.status_code == 429 and response.json()["code"] == "throttled"


# --- retrying every failed cell ---------------------------------------------------------------

def test_retry_failed_dry_run_reports_and_changes_nothing(api, finished):
    response = api.post(f"/api/v1/jobs/{finished}/retry-failed", {"dry_run": True},
                        format="json")
    assert response.status_code == 200
    assert response.json()["eligible"] == 2 and response.json()["by_error"] == {
        "ai_unavailable": 2}
    assert not Operation.objects.filter(is_retry=True).exists()


def test_retry_failed_retries_each_failed_cell_staggered(api, finished):
    response = api.post(f"/api/v1/jobs/{finished}/retry-failed", {"reason": "outage over"},
                        format="json")
    assert response.status_code == 202 and len(response.json()["retried"]) == 2
    children = list(Operation.objects.filter(is_retry=True).order_by("created_at"))
    assert [c.status for c in children] == [Status.PENDING, Status.RETRY_SCHEDULED]
    drain(finished)
    assert {c["status"] for c in cells(api, finished).values()} == {"completed"}


# --- someone else's ---------------------------------------------------------------------------

def test_someone_elses_job_and_cells_are_the_same_404_as_unknown_ids(api, finished):
    from rest_framework.test import APIClient

    cell = cells(api, finished)[("asia-pacific", 1)]
    mallory = APIClient()
    mallory.force_authenticate(UserFactory(username="mallory"))
    for method, theirs, unknown, body in [
            ("get", f"/api/v1/jobs/{finished}/", "/api/v1/jobs/999999/", None),
            ("get", f"/api/v1/jobs/{finished}/executions/all",
             "/api/v1/jobs/999999/executions/all", None),
            ("post", f"/api/v1/jobs/{finished}/retry-failed", "/api/v1/jobs/999999/retry-failed",
             {}),
            ("get", f"/api/v1/executions/{cell['id']}/details",
             "/api/v1/executions/999999/details", None),
            ("post", f"/api/v1/executions/{cell['id']}/retry-question",
             "/api/v1/executions/999999/retry-question",
             {"region": "asia-pacific", "question_index": 1})]:
        a = getattr(mallory, method)(theirs, body, format="json")
        b = getattr(mallory, method)(unknown, body, format="json")
        assert a.status_code == b.status_code == 404, theirs
        assert a.content == b.content, theirs
    assert not Operation.objects.filter(is_retry=True).exists()


def test_the_grid_endpoint_costs_the_same_queries_for_6_cells_as_for_60(api, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from executions.services import create_job

    counts = []
    for size in (3, 30):
        job = create_job(user, title="t", model="m", regions=["us-east", "eu-west"],
                         questions=[f"Q{i}" for i in range(size)], slots=2 * size)
        with CaptureQueriesContext(connection) as queries:
            assert len(api.get(f"/api/v1/jobs/{job.pk}/executions/all").json()) == 2 * size
        counts.append(len(queries))
    assert counts[0] == counts[1]

"""Per-question retry and "retry all failed" under real concurrency (PostgreSQL, threads)."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.grid import cells_of
from executions.models import Job
from executions.services import create_job, retry_failed_cells
from operations.models import Channel, Operation
from tests.running import in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_throttle(settings):
    settings.REBOUND = {**settings.REBOUND, "RETRY_THROTTLE": "100000/min"}


def failed_job(user, cells: int) -> Job:
    """A job whose cells all failed (their first operations marked failed directly)."""
    job = create_job(user, title="t", model="m", regions=["us-east"],
                     questions=[f"Q{i}" for i in range(cells)], slots=cells)
    for execution in job.executions.all():
        Operation.objects.filter(pk=execution.operation_id).update(
            status="failed", error_code="ai_timeout", attempt_count=4)
    return job


def test_one_of_20_concurrent_retry_question_calls_wins(user):
    job = failed_job(user, 1)
    execution = job.executions.get()
    token = Token.objects.get_or_create(user=user)[0].key

    def post(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client.post(f"/api/v1/executions/{execution.pk}/retry-question",
                           {"region": "us-east", "question_index": 0}, format="json").status_code

    statuses = in_threads(20, post)
    assert statuses.count(202) == 1 and statuses.count(409) == 19
    assert Operation.objects.filter(parent_id=execution.operation_id).count() == 1


def test_concurrent_retry_all_failed_makes_one_child_per_cell(user):
    job = failed_job(user, 30)
    reports = in_threads(3, lambda i: retry_failed_cells(job, by=user, channel=Channel.API))
    assert sum(len(r["retried"]) for r in reports) == 30
    children = Operation.objects.filter(parent__in=[e.operation_id for e in job.executions.all()])
    assert children.count() == 30
    assert all(cell.chain.retry_count == 1 for cell in cells_of(job))


def test_two_cells_settling_at_once_never_exceed_the_jobs_concurrency(user, settings):
    from executions.services import start_waiting_cells

    settings.REBOUND = {**settings.REBOUND, "JOB_CONCURRENCY": 2}
    job = create_job(user, title="t", model="m", regions=["us-east"],
                     questions=[f"Q{i}" for i in range(10)])
    for execution in job.executions.filter(operation__isnull=False):
        Operation.objects.filter(pk=execution.operation_id).update(status="completed")
    in_threads(6, lambda i: start_waiting_cells(job.pk))
    assert Operation.objects.filter(input__job_id=job.pk, status="pending").count() == 2

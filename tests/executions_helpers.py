"""Making and running jobs in tests: create through the API, run every cell in the process."""
from operations.models import Operation, Status
from tests.running import make_due, run_until_settled

QUESTIONS = ["What is a lease?", "Why add jitter?"]


def create(api, regions=("us-east", "asia-pacific"), questions=QUESTIONS, **extra):
    return api.post("/api/v1/jobs/", {"title": "Compare regions", "model": "m-1",
                                      "regions": list(regions), "questions": list(questions),
                                      **extra}, format="json")


def drain(job_id):
    """Run every operation of the job until none is waiting (cells start as slots free up;
    automatic retries are made due at once instead of waited for)."""
    while True:
        waiting = Operation.objects.filter(kind="executions.answer", input__job_id=job_id,
                                           status__in=[Status.PENDING, Status.RETRY_SCHEDULED])
        operation = waiting.first()
        if operation is None:
            return
        make_due(operation)
        run_until_settled(operation)


def failed_cell(job, index=0):
    return job.executions.get(region="asia-pacific", question_index=index)

"""The executions demo: a job over three regions whose `demo-flaky` cells partly failed (one
timed out, one was refused, one ran out of automatic retries), so "Retry (1/3)" and "Retry all
failed" can be tried at once; every retry of those cells succeeds."""
from executions.models import Job
from executions.services import create_job

QUESTIONS = [
    "What is the difference between a retry and a redelivery?",
    "When should a client honour a Retry-After header?",
    "Why does exponential backoff need jitter?",
    "What makes an operation safe to run twice?",
    "How long should a worker's lease be?",
]
REGIONS = ["us-east", "eu-west", "demo-flaky"]
FAULTS = {("demo-flaky", 1): "ai_timeout", ("demo-flaky", 2): "ai_rejected",
          ("demo-flaky", 4): "ai_unavailable"}


def seed(user):
    if Job.objects.filter(owner=user).exists():
        return
    # A region that is down for the first two minutes of `manage.py run` (see its faults): its
    # cells wait for it, spending no attempt, and finish by themselves once it is back.
    create_job(user, title="A region that is down for two minutes", model="rebound-local-1",
               regions=["us-east", "demo-outage"], questions=QUESTIONS[:4])
    # Every cell starts at once, each failing one with its injected fault.
    create_job(user, title="Retry questions across regions", model="rebound-local-1",
               regions=REGIONS, questions=QUESTIONS, slots=len(REGIONS) * len(QUESTIONS),
               faults=FAULTS)

"""The batches demo: eight essays in region `demo-flaky`. AI feedback failed for two of them
(the provider stayed unavailable through every automatic retry), so comparative judgement
waits for them; one essay is too short to judge and is left out. Retrying the AI feedback
phase lets the batch finish and rank."""
from batches.models import Batch
from batches.pipeline import request_pipeline
from batches.services import create_batch

ESSAY = ("Retrying work that failed is only safe when doing it twice changes nothing. "
         "{topic} A system that retries blindly turns one outage into two: the provider "
         "that was slow is now flooded by every client at once. Backoff spreads the load, "
         "jitter breaks the lockstep, and a limit stops the loop. The person who asked for "
         "the work should see what happened, what was tried, and what they can do next.")
TOPICS = [
    "Payments are the classic example, because a second charge is a real loss.",
    "Email is another: a customer who gets the same message three times stops reading.",
    "Imports of large files show the cost of starting over instead of resuming.",
    "Machine learning calls fail in bursts when a model is cold or overloaded.",
    "Background jobs in web apps die on every deploy unless someone hands them back.",
    "Batch pipelines need each step to write its output once, however often it is run.",
    "Schedulers must agree on time, so the database clock decides, not each worker's.",
]
SHORT = "Retries are good. They help. Use them."
FAILS_FEEDBACK = (1, 4)  # essay positions whose AI feedback fails until retried


def seed(user):
    if Batch.objects.filter(owner=user).exists():
        return
    essays = [ESSAY.format(topic=topic) for topic in TOPICS]
    essays.insert(5, SHORT)
    batch = create_batch(user, title="Essays on retrying safely", essays=essays,
                         region="demo-flaky")
    ids = list(batch.essays.values_list("pk", flat=True))
    request_pipeline(batch, "cj_assessment",
                     faults={ids[i]: {"ai_feedback": "ai_unavailable"} for i in FAILS_FEEDBACK})

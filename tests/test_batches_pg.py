"""Batch pipelines under real concurrency (PostgreSQL, threads): the batch-only phase starts
once when the last essays finish together, and one step delivered twice at once writes once."""
import pytest

from batches.models import PhaseOutput
from batches.pipeline import request_pipeline
from batches.services import create_batch
from operations import runner
from operations.models import Operation
from tests.batches_helpers import assert_one_output_per_step, drain, essay
from tests.running import in_threads

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_last_essays_finishing_together_start_the_batch_only_phase_once(ai, user):
    for _ in range(5):  # the race is decided differently each time
        batch = create_batch(user, title="race", essays=[essay(i) for i in range(4)])
        request_pipeline(batch, "nlp")
        drain(batch.pk)
        request_pipeline(batch, "cj_assessment")
        feedbacks = list(Operation.objects.filter(kind="batches.ai_feedback",
                                                  input__batch_id=batch.pk))
        outcomes = in_threads(len(feedbacks), lambda i: runner.run(feedbacks[i].pk))
        assert outcomes == ["completed"] * 4
        assert Operation.objects.filter(kind="batches.cj_assessment",
                                        input__batch_id=batch.pk).count() == 1
        drain(batch.pk)
    assert_one_output_per_step()


def test_one_step_delivered_twice_at_once_writes_its_output_once(ai, user):
    batch = create_batch(user, title="twice", essays=[essay(0)])
    request_pipeline(batch, "spellcheck")
    operation = Operation.objects.get(kind="batches.spellcheck")
    outcomes = in_threads(2, lambda i: runner.run(operation.pk))
    assert sorted(outcomes) == ["completed", "skipped"]
    assert PhaseOutput.objects.filter(batch=batch).count() == 1
    assert_one_output_per_step()

"""Batch pipelines against the real local inference service: phases in order, the batch-only
phase once every essay is ready, permanent failures left out, phase retry with a reason, and
every output written exactly once (I5, checked after every test)."""
import pytest
from django.core.cache import cache

from batches import pipeline
from batches.models import Batch, PhaseOutput
from operations import runner
from operations.models import Operation
from tests.batches_helpers import assert_one_output_per_step, drain, essay

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def i5_after_each_test(settings):
    settings.REBOUND = {**settings.REBOUND, "RETRY_THROTTLE": "1000/min"}
    cache.clear()
    yield
    assert_one_output_per_step()


def create(api, essays, region="eu-west"):
    response = api.post("/api/v1/batches/", {"title": "Essays", "essays": essays,
                                             "region": region}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def run(api, batch_id, phase="cj_assessment", **body):
    return api.post(f"/api/v1/batches/{batch_id}/pipeline",
                    {"requested_pipeline": phase, **body}, format="json")


def retry(api, batch_id, phase, **body):
    return api.post(f"/api/v1/batches/{batch_id}/retry-phase", {"phase": phase, **body},
                    format="json")


def items(api, batch_id, phase):
    body = api.get(f"/api/v1/batches/{batch_id}/").json()
    return next(p for p in body["phases"] if p["phase"] == phase)["items"]


@pytest.fixture
def feedback_failed(ai, api):
    """Five essays (one too short); the AI provider was down while their feedback ran."""
    texts = [essay(i) for i in range(4)] + ["Too short to judge, really."]
    batch_id = create(api, texts, region="asia-pacific")
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[500])
    run(api, batch_id)
    drain(batch_id)
    ai.faults(region="asia-pacific", error_rate=0.0)
    return batch_id


def test_every_phase_runs_in_order_and_the_batch_is_ranked(ai, api):
    batch_id = create(api, [essay(i) for i in range(5)])
    response = run(api, batch_id)
    assert response.status_code == 202 and response.json()["started"] == 5
    assert api.get(f"/api/v1/batches/{batch_id}/").json()["busy"] is True
    drain(batch_id)
    body = api.get(f"/api/v1/batches/{batch_id}/").json()
    assert body["busy"] is False
    for phase in body["phases"]:
        assert {i["status"] for i in phase["items"]} == {"completed"}, phase["phase"]
    assert [entry["rank"] for entry in body["ranking"]] == [1, 2, 3, 4, 5]
    assert all(entry["comparisons"] >= 3 for entry in body["ranking"])
    spelling = items(api, batch_id, "spellcheck")[0]["output"]
    assert "count" in spelling and spelling["is_retry"] is False
    language = items(api, batch_id, "nlp")[0]["output"]
    assert language["words"] >= 50 and "reading_ease" in language


def test_a_pipeline_request_runs_only_up_to_the_requested_phase(ai, api):
    batch_id = create(api, [essay(i) for i in range(3)])
    run(api, batch_id, "nlp")
    drain(batch_id)
    assert {i["status"] for i in items(api, batch_id, "nlp")} == {"completed"}
    assert {i["status"] for i in items(api, batch_id, "ai_feedback")} == {"not_started"}
    run(api, batch_id, "cj_assessment")
    drain(batch_id)
    assert items(api, batch_id, "cj_assessment")[0]["status"] == "completed"


def test_an_essay_too_short_fails_nlp_for_good_and_is_left_out(api, feedback_failed):
    short = items(api, feedback_failed, "nlp")[4]
    assert short["status"] == "failed_permanently"
    assert short["error"]["code"] == "essay_too_short" and short["error"]["permanent"]
    operation = Operation.objects.get(kind="batches.nlp", input__essay_id=short["essay_id"])
    assert operation.attempts.count() == 1  # never retried automatically
    later = items(api, feedback_failed, "ai_feedback")[4]
    assert later["status"] == "left_out" and later["left_out"]["code"] == "essay_too_short"


def test_the_batch_only_phase_waits_for_essays_whose_feedback_failed(api, feedback_failed):
    body = api.get(f"/api/v1/batches/{feedback_failed}/").json()
    assert items(api, feedback_failed, "cj_assessment")[0]["status"] == "not_started"
    assert len(body["waiting_for"]) == 4 and body["ranking"] is None
    assert body["busy"] is False  # nothing more starts without a retry


def test_a_phase_retry_with_a_reason_continues_through_the_later_phases(api, feedback_failed):
    response = retry(api, feedback_failed, "ai_feedback", retry_reason="provider is back")
    assert response.status_code == 202
    body = response.json()
    assert body["phase"] == "ai_feedback" and len(body["retried"]) == 4
    children = Operation.objects.filter(pk__in=body["retried"])
    assert {(c.is_retry, c.retry_reason) for c in children} == {(True, "provider is back")}
    drain(feedback_failed)
    feedback = items(api, feedback_failed, "ai_feedback")
    assert [i["status"] for i in feedback[:4]] == ["completed"] * 4
    assert feedback[0]["output"]["is_retry"] is True
    assert feedback[0]["output"]["retry_reason"] == "provider is back"
    assert feedback[0]["retry_count"] == 1
    ranking = api.get(f"/api/v1/batches/{feedback_failed}/").json()["ranking"]
    assert len(ranking) == 4  # the short essay is left out of the ranking


def test_a_retry_of_some_essays_only(api, feedback_failed):
    essay_ids = [i["essay_id"] for i in items(api, feedback_failed, "ai_feedback")[:2]]
    response = retry(api, feedback_failed, "ai_feedback", essay_ids=essay_ids)
    assert response.status_code == 202 and len(response.json()["retried"]) == 2
    drain(feedback_failed)
    statuses = [i["status"] for i in items(api, feedback_failed, "ai_feedback")]
    assert statuses[:4] == ["completed", "completed", "failed", "failed"]


def test_the_pipeline_request_with_is_retry_is_a_phase_retry(api, feedback_failed):
    response = run(api, feedback_failed, "ai_feedback", is_retry=True, retry_reason="again")
    assert response.status_code == 202 and len(response.json()["report"]["retried"]) == 4


# --- refusals ---------------------------------------------------------------------------------

def test_an_unknown_phase_is_a_400_listing_the_phases(api, feedback_failed):
    for response in (retry(api, feedback_failed, "grammar"),
                     run(api, feedback_failed, "grammar")):
        assert response.status_code == 400 and response.json()["code"] == "unknown_phase"
        assert response.json()["phases"] == list(pipeline.PHASES)


@pytest.mark.parametrize("length, status", [(500, 202), (501, 400)])
def test_a_reason_of_500_characters_is_accepted_and_501_refused(api, feedback_failed, length,
                                                                 status):
    response = retry(api, feedback_failed, "ai_feedback", retry_reason="r" * length)
    assert response.status_code == status
    if status == 400:
        assert response.json()["code"] == "reason_too_long"
        assert not Operation.objects.filter(is_retry=True).exists()


def test_a_reason_over_500_characters_is_refused_by_the_pipeline_request_either_way(
        api, feedback_failed):
    for is_retry in (True, False):
        response = run(api, feedback_failed, "ai_feedback", is_retry=is_retry,
                       retry_reason="r" * 501)
        assert response.status_code == 400 and response.json()["code"] == "reason_too_long"


def test_essay_ids_with_the_batch_only_phase_is_a_400(api, feedback_failed):
    response = retry(api, feedback_failed, "cj_assessment", essay_ids=[1])
    assert response.status_code == 400 and response.json()["code"] == "batch_only_phase"


def test_the_batch_only_phase_with_earlier_phases_unfinished_is_a_409_not_ready(
        api, feedback_failed):
    response = retry(api, feedback_failed, "cj_assessment")
    assert response.status_code == 409 and response.json()["code"] == "phase_not_ready"


def test_a_phase_with_nothing_failed_is_a_409_nothing_to_retry(api, feedback_failed):
    response = retry(api, feedback_failed, "spellcheck")
    assert response.status_code == 409 and response.json()["code"] == "nothing_to_retry"


def test_chosen_essays_whose_earlier_phase_is_unfinished_are_not_ready(ai, api):
    batch_id = create(api, [essay(0), essay(1)])
    run(api, batch_id, "nlp")  # spellcheck pending for both: nothing has run
    essay_ids = [i["essay_id"] for i in items(api, batch_id, "nlp")]
    response = retry(api, batch_id, "nlp", essay_ids=essay_ids)
    assert response.status_code == 409 and response.json()["code"] == "phase_not_ready"


def test_items_at_their_retry_limit_are_counted_as_skipped(ai, api, feedback_failed):
    ai.faults(region="asia-pacific", error_rate=1.0, statuses=[500])
    for _ in range(3):
        retry(api, feedback_failed, "ai_feedback")
        drain(feedback_failed)
    response = retry(api, feedback_failed, "ai_feedback")
    assert response.status_code == 202
    assert response.json()["skipped"]["retry_limit_reached"] == 4
    assert response.json()["retried"] == []


def test_someone_elses_batch_is_the_same_404_as_an_unknown_one(api, feedback_failed):
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    mallory = APIClient()
    mallory.force_authenticate(UserFactory(username="mallory"))
    for tail, body in (("", None), ("retry-phase", {"phase": "ai_feedback"}),
                       ("pipeline", {"requested_pipeline": "nlp"})):
        method = mallory.get if body is None else mallory.post
        theirs = method(f"/api/v1/batches/{feedback_failed}/{tail}", body, format="json")
        unknown = method(f"/api/v1/batches/999999/{tail}", body, format="json")
        assert theirs.status_code == unknown.status_code == 404 and theirs.content == unknown.content
    assert not Operation.objects.filter(is_retry=True).exists()


def test_a_bad_batch_is_refused_with_field_errors(api):
    for body in ({"title": "t", "essays": []}, {"title": "t", "essays": ["x"] * 501},
                 {"title": "t", "essays": ["x" * 20_001]},
                 {"title": "t", "essays": ["x"], "region": "mars"}):
        response = api.post("/api/v1/batches/", body, format="json")
        assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert not Batch.objects.exists()


# --- exactly once ------------------------------------------------------------------------------

def test_a_duplicate_delivery_writes_nothing_twice(ai, api):
    batch_id = create(api, [essay(0)])
    run(api, batch_id, "spellcheck")
    operation = Operation.objects.get(kind="batches.spellcheck")
    assert runner.run(operation.pk) == "completed"
    assert runner.run(operation.pk) == "skipped"
    assert PhaseOutput.objects.filter(phase="spellcheck").count() == 1


def test_a_stalled_first_attempt_loses_to_the_phase_retry_of_its_item(ai, api, user):
    from operations.errors import PermanentError
    from operations.kinds import find

    batch_id = create(api, [essay(0)])
    run(api, batch_id, "spellcheck")
    first = Operation.objects.get(kind="batches.spellcheck")
    # Attempt 1 starts and stalls inside the handler ...
    first.claim("stalled-host:1:1")
    stalled_token = first.lease_token
    from operations.runner import Context

    completion = find("batches.spellcheck").handler(Context(first, stalled_token, 1, 300))
    # ... its lease is taken over and the item fails for good meanwhile; the phase is retried.
    assert first.recover(stalled_token)
    assert first.release_if_due()
    first.refresh_from_db()
    assert first.claim("other-host:1:1")
    first.fail(first.lease_token, 2, PermanentError("invalid_input", "gave up"))
    assert retry(api, batch_id, "spellcheck").status_code == 202
    drain(batch_id)
    # The stalled attempt wakes up and tries to complete: it writes nothing.
    assert first.complete(stalled_token, 1, completion.result, also=completion.write) is False
    [output] = PhaseOutput.objects.filter(phase="spellcheck")
    assert output.operation.parent_id == first.pk


def test_two_last_essays_finishing_together_start_the_batch_only_phase_once(ai, api):
    from operations import followups

    batch_id = create(api, [essay(i) for i in range(3)])
    run(api, batch_id, "nlp")
    drain(batch_id)
    run(api, batch_id, "cj_assessment")  # AI feedback starts for the three essays
    feedbacks = list(Operation.objects.filter(kind="batches.ai_feedback"))
    assert runner.run(feedbacks[0].pk) == "completed"
    last_two = feedbacks[1:]
    # Both completions commit before either continuation runs: each continuation then sees
    # every essay ready, and both ask for the batch-only phase.
    for operation in last_two:
        operation.claim("host:1:1")
        completion = handler_completion(operation)
        assert operation.complete(operation.lease_token, 1, completion.result,
                                  also=completion.write)
    for operation in last_two:
        followups.run(operation.pk)
    assert Operation.objects.filter(kind="batches.cj_assessment").count() == 1
    drain(batch_id)
    assert len(api.get(f"/api/v1/batches/{batch_id}/").json()["ranking"]) == 3


def handler_completion(operation):
    """Run the kind's handler as its worker would, without completing the operation."""
    from operations.kinds import find
    from operations.runner import Context

    operation.refresh_from_db()
    return find(operation.kind).handler(Context(operation, operation.lease_token, 1, 300))


def test_judgements_the_provider_failed_are_asked_again_and_only_those(ai, api):
    batch_id = create(api, [essay(i) for i in range(6)])
    run(api, batch_id, "ai_feedback")
    drain(batch_id)
    run(api, batch_id)
    cj = Operation.objects.get(kind="batches.cj_assessment")
    ai.faults(region="eu-west", sequence=[200, 503, 200, 503])  # two of twelve pairs fail
    assert runner.run(cj.pk) == "retry_scheduled"
    cj.refresh_from_db()
    assert len(cj.checkpoint["judgements"]) == 10 and cj.error_code == "ai_unavailable"
    drain(batch_id)
    cj.refresh_from_db()
    assert cj.status == "completed" and cj.attempt_count == 2
    assert len(cj.result["judgements"]) == 12

"""Every event type of the catalogue reaches the owner's subscribed endpoints once each, with
the documented shape: driven by the workloads themselves (a job, a batch, an import, an
outage), delivered to a real receiver process."""
import io

import pytest
from django.core.files import File

from imports.passes import accept_upload
from operations import gates, runner
from operations.errors import TransientError
from operations.kinds import register
from operations.events import CATALOGUE
from operations.models import Gate, Operation, Status
from operations.services import submit
from tests import batches_helpers, executions_helpers
from tests.imports_helpers import sample_bytes
from tests.running import run_until_settled
from tests.webhooks_helpers import deliver_all
from webhooks import payloads, services
from webhooks.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoints(user, receiver):
    everything = services.create_endpoint(user, url=receiver.url, event_types=list(CATALOGUE))
    some = services.create_endpoint(user, url=receiver.url + "?some",
                                    event_types=["job.finished", "operation.failed"])
    receiver.mode("ok", secrets=[everything.secret, some.secret], clear=True)
    return everything, some


def received(receiver) -> list[dict]:
    seen = receiver.deliveries()
    assert all(s["verified"] for s in seen)
    for s in seen:
        payloads.DATA[s["type"]](data=s["data"]).is_valid(raise_exception=True)
    return seen


def test_a_job_tells_failed_recovered_and_finished(ai, api, user, endpoints, receiver):
    from executions.models import Job

    job_id = executions_helpers.create(api, regions=["us-east"], questions=["Q?"]).json()["id"]
    # The cell fails for good on its first run (the demo's injected permanent fault).
    Operation.objects.filter(kind="executions.answer").update(input={
        **Operation.objects.get(kind="executions.answer").input, "fault": "ai_rejected"})
    executions_helpers.drain(job_id)
    deliver_all()
    [cell] = Job.objects.get(pk=job_id).executions.all()
    child = services.retry_operation(cell.operation_id, by=user, channel="api")
    run_until_settled(child)
    deliver_all()
    seen = received(receiver)
    types = sorted(s["type"] for s in seen)
    assert types == sorted(["operation.failed", "operation.failed", "job.finished",
                            "job.finished", "operation.recovered", "job.finished",
                            "job.finished"])
    ids = [s["id"] for s in seen]
    assert len(set(ids)) == 4  # 4 events; each went to both endpoints that wanted it
    finished = [s["data"] for s in seen if s["type"] == "job.finished"]
    assert {f["job"]["counts"].get("completed", 0) for f in finished} == {0, 1}


def test_a_batch_tells_a_failed_phase_and_its_end(api, user, endpoints, receiver):
    answer = api.post("/api/v1/batches/", {"title": "Essays", "region": "eu-west", "essays": [
        batches_helpers.essay(1), "Too short to judge."]}, format="json")
    batch_id = answer.json()["id"]
    api.post(f"/api/v1/batches/{batch_id}/pipeline", {"requested_pipeline": "nlp"},
             format="json")
    batches_helpers.drain(batch_id)
    deliver_all()
    seen = received(receiver)
    everything = [s for s in seen if s["type"].startswith("batch.")]
    assert sorted(s["type"] for s in everything) == ["batch.finished", "batch.phase_failed"]
    failed = next(s["data"] for s in everything if s["type"] == "batch.phase_failed")
    assert failed["phase"] == "nlp" and failed["operation"]["error"]["code"] == "essay_too_short"
    finished = next(s["data"] for s in everything if s["type"] == "batch.finished")
    assert finished["phase"] == "nlp" and finished["counts"]["completed"] == 3
    # operation.failed went to both endpoints; the batch events only to the one for all.
    assert sorted(s["type"] for s in seen if s["type"] == "operation.failed") == [
        "operation.failed"] * 2


def test_an_import_tells_its_full_pass(user, endpoints, receiver, export_storage):
    profile = accept_upload(user, File(io.BytesIO(sample_bytes()), name="export.json"))
    run_until_settled(profile.quick_pass_operation)
    run_until_settled(profile.full_pass_operation)
    deliver_all()
    failing = accept_upload(user, File(io.BytesIO(sample_bytes()), name="export.json"),
                            fault={"at": 2, "error": "permanent"})
    run_until_settled(failing.quick_pass_operation)
    run_until_settled(failing.full_pass_operation)
    deliver_all()
    seen = received(receiver)
    types = [s["type"] for s in seen if s["type"].startswith("import.")]
    assert sorted(types) == ["import.full_pass.completed", "import.full_pass.failed"]
    done = next(s["data"] for s in seen if s["type"] == "import.full_pass.completed")
    assert done["import"]["profile_id"] == profile.pk


def test_an_outage_tells_waiting_and_resumed(user, endpoints, receiver):
    operation = Operation.objects.create(kind="diagnostics.noop", owner=user,
                                         dependency="inference:eu-west",
                                         triggered_by=user)
    gates.hold("inference:eu-west", by=user, reason="drill")  # parks what needs it
    operation.refresh_from_db()
    assert operation.status == Status.WAITING
    gates.release("inference:eu-west", by=user, reason="drill over")
    gates.tick()
    operation.refresh_from_db()
    assert operation.status == Status.PENDING
    deliver_all()
    seen = received(receiver)
    assert [s["type"] for s in seen] == ["operation.waiting", "operation.resumed"]
    assert {s["data"]["operation"]["id"] for s in seen} == {str(operation.pk)}
    assert Event.objects.count() == 2
    assert Gate.objects.get(key="inference:eu-west").state == "closed"


def test_every_type_in_the_catalogue_is_covered_by_a_test_above():
    covered = {"operation.failed", "operation.recovered", "operation.waiting",
               "operation.resumed", "job.finished", "batch.phase_failed", "batch.finished",
               "import.full_pass.completed", "import.full_pass.failed"}
    assert covered == set(CATALOGUE)


@register("tests.webhooks_events.away")
def away(context):
    raise TransientError("ai_unavailable", "the service is away", dependency_down=True)


def test_an_attempt_that_finds_its_service_down_tells_waiting(user, endpoints, receiver):
    # Five failures in a row open the gate: the fifth goes back to wait for it (hand_back),
    # and the four scheduled to retry are parked behind it; each is told once.
    operations = [submit("tests.webhooks_events.away", user, {}, dependency="tests:away")
                  for _ in range(5)]
    for operation in operations:
        runner.run(operation.pk)
    assert set(Operation.objects.filter(pk__in=[o.pk for o in operations])
               .values_list("status", flat=True)) == {Status.WAITING}
    deliver_all()
    seen = [s for s in received(receiver) if s["path"] == "/hook"]  # the endpoint for all
    assert [s["type"] for s in seen] == ["operation.waiting"] * 5
    told = {s["data"]["operation"]["id"]: s["data"]["operation"] for s in seen}
    assert set(told) == {str(o.pk) for o in operations}
    handed_back = told[str(operations[-1].pk)]
    assert handed_back["status"] == "waiting" and handed_back["attempts"] == 1
    assert handed_back["error"]["code"] == "ai_unavailable"

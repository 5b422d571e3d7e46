"""Waiting work as people see it: the operation page, a job's cell, the API; and the staff
gates page with Hold and Release."""
import pytest

from executions.models import Job
from operations import gates
from operations.models import Gate, GateEvent, Operation, Status
from tests.executions_helpers import create, drain
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting_job(ai, api):
    """A job in eu-west, which is down: its cells wait for the region."""
    ai.faults(region="eu-west", error_rate=1.0, statuses=[503])
    job_id = create(api, regions=["eu-west"], questions=[f"Q{i}?" for i in range(6)]).json()["id"]
    drain(job_id)
    assert Gate.objects.get(key="inference:eu-west").state == "open"
    return Job.objects.get(pk=job_id)


def test_a_waiting_cell_says_what_it_waits_for_and_offers_no_retry(web, waiting_job):
    html = web.get(f"/jobs/{waiting_job.pk}/").content.decode()
    assert "Waiting: the AI service in eu-west is not answering (since " in html
    assert "This continues by itself when it is back." in html
    # Only a cell that failed for good before the outage was recognised offers Retry.
    failed = Operation.objects.filter(status=Status.FAILED).count()
    assert Operation.objects.filter(status=Status.WAITING).count() >= 4
    assert html.count("Retry (1/3)") == failed <= 1


def test_the_api_carries_the_waiting_state_dependency_and_since(api, waiting_job):
    cells = api.get(f"/api/v1/jobs/{waiting_job.pk}/executions/all").json()
    waiting = [cell for cell in cells if cell["status"] == "waiting"]
    assert waiting and all(cell["waiting"]["dependency"] == "inference:eu-west"
                           and cell["waiting"]["since"] for cell in waiting)
    operation = Operation.objects.filter(status=Status.WAITING).first()
    body = api.get(f"/api/v1/operations/{operation.pk}/").json()
    assert body["status"] == "waiting" and body["dependency"] == "inference:eu-west"
    assert body["waiting"]["message"].startswith("Waiting: the AI service in eu-west")


def test_the_operation_page_shows_waiting_not_failed(web, waiting_job):
    operation = Operation.objects.filter(status=Status.WAITING).first()
    html = web.get(f"/operations/{operation.pk}/").content.decode()
    assert "Waiting: the AI service in eu-west" in html and "banner-failed" not in html


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_gates_page_lists_each_gate_with_what_waits(staff, waiting_job):
    html = staff.get("/operations/gates/").content.decode()
    assert "inference:eu-west" in html and "The AI service in eu-west" in html
    assert ">Open<" in html


def test_staff_hold_and_release_a_gate_with_a_reason(staff):
    response = staff.post("/operations/gates/act", {"key": "inference:us-east", "action": "hold",
                                                   "reason": "provider maintenance"})
    assert response.status_code == 302
    gate = Gate.objects.get(key="inference:us-east")
    assert gate.state == "open" and gate.held
    staff.post("/operations/gates/act", {"key": "inference:us-east", "action": "release",
                                        "reason": "maintenance over"})
    assert Gate.objects.get(key="inference:us-east").state == "closed"
    assert list(GateEvent.objects.order_by("id").values_list("state", "by__username")) == [
        ("open", "root"), ("closed", "root")]


def test_a_hold_without_a_reason_is_refused_and_changes_nothing(staff):
    response = staff.post("/operations/gates/act", {"key": "inference:us-east",
                                                   "action": "hold", "reason": ""}, follow=True)
    assert "Say why" in response.content.decode()
    assert not Gate.objects.exists()


def test_the_gates_page_is_for_staff_only(web):
    assert web.get("/operations/gates/").status_code == 302  # to the admin's sign-in


def test_metrics_expose_gates_and_waiting_work(staff, waiting_job):
    text = staff.get("/metrics").content.decode()
    assert 'rebound_gate_open{dependency="inference:eu-west"} 1.0' in text
    waiting = Operation.objects.filter(status=Status.WAITING).count()
    assert f'rebound_operations_waiting{{dependency="inference:eu-west"}} {waiting}.0' in text
    gates.release("inference:eu-west", by=None, reason="test")
    assert 'rebound_gate_open{dependency="inference:eu-west"} 0.0' in staff.get(
        "/metrics").content.decode()


def held(region: str) -> None:
    gates.hold(f"inference:{region}", by=None, reason="provider maintenance")


def test_a_batch_phase_waits_for_its_region_and_the_page_says_so(web, user):
    from batches.pipeline import request_pipeline
    from batches.services import create_batch
    from tests.batches_helpers import essay
    from tests.running import run_until_settled

    held("eu-west")
    batch = create_batch(user, title="Essays", essays=[essay(0)], region="eu-west")
    request_pipeline(batch, "ai_feedback")
    for _ in range(3):  # spellcheck and nlp need no AI: they run; ai_feedback does not
        for operation in Operation.objects.filter(status=Status.PENDING):
            run_until_settled(operation)
        gates.tick()
    feedback = Operation.objects.get(kind="batches.ai_feedback")
    assert feedback.status == Status.WAITING and feedback.attempt_count == 0
    html = web.get(f"/batches/{batch.pk}/").content.decode()
    assert "Waiting: the AI service in eu-west is not answering" in html


def test_an_interview_question_waits_for_its_region_and_the_page_says_so(web, user):
    from interviews.services import start_session

    held("eu-west")
    session = start_session(user, "Queues", region="eu-west")
    gates.tick()
    html = web.get(f"/interviews/{session.pk}/").content.decode()
    assert "Waiting: the AI service in eu-west is not answering" in html
    assert "Retry" not in html.split("Waiting:")[1].split("</p>")[0]

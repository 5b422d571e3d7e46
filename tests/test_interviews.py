"""Interview sessions: AI operations with automatic and manual retry, against the real local
inference service."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from operations import dispatcher, gates, runner
from interviews.models import InterviewTurn
from interviews.services import answer_question, start_session
from operations.models import Gate, Operation, Outcome, Status, Trigger
from tests.running import run_until_settled

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def session(ai, user):
    return start_session(user, "PostgreSQL", region="eu-west")


def question_op(session):
    return session.turns.get().question_operation


def test_question_reaches_the_session_page(ai, web, session):
    run_until_settled(question_op(session))
    page = web.get(session.get_absolute_url()).content.decode()
    assert "PostgreSQL" in page and "Your answer" in page


def test_feedback_reaches_the_session_page(ai, web, session):
    run_until_settled(question_op(session))
    turn = InterviewTurn.objects.get(session=session)
    answer_question(turn, "I sharded a 2 TB table by tenant and cut p95 latency by 40 percent.")
    run_until_settled(InterviewTurn.objects.get(pk=turn.pk).feedback_operation)
    page = web.get(session.get_absolute_url()).content.decode()
    assert "Feedback" in page and "concrete example" in page


def test_500_500_then_200_completes_on_the_third_try(ai, session):
    ai.faults(region="eu-west", sequence=[500, 500, 200])
    operation = run_until_settled(question_op(session))
    attempts = list(operation.attempts.all())
    assert operation.status == Status.COMPLETED
    assert [a.outcome for a in attempts] == [Outcome.TRANSIENT, Outcome.TRANSIENT,
                                             Outcome.SUCCEEDED]
    assert 1.0 <= attempts[0].delay_seconds <= 1.2 and 2.0 <= attempts[1].delay_seconds <= 2.4
    assert InterviewTurn.objects.get(session=session).question


def test_503_forever_fails_after_exactly_4_attempts_at_1_2_4_s_with_a_retry_button(ai, web,
                                                                                   session):
    ai.faults(region="eu-west", sequence=[503] * 10)
    operation = run_until_settled(question_op(session))
    assert operation.status == Status.FAILED and operation.attempts.count() == 4
    delays = [a.delay_seconds for a in operation.attempts.order_by("number")]
    assert delays[3] is None  # no fifth try
    for delay, base in zip(delays, (1, 2, 4)):
        assert base <= delay <= base * 1.2  # backoff plus at most 20 % jitter
    assert operation.error_message.startswith("AI service unavailable")
    page = web.get(session.get_absolute_url()).content.decode()
    assert "AI service unavailable" in page and "What to do:" in page
    assert "Retry (1/3)" in page and "Retrying…" in page


def test_429_retry_after_holds_the_region_at_least_that_long(ai, session):
    ai.faults(region="eu-west", sequence=[429], retry_after="30")
    operation = question_op(session)
    runner.run(operation.pk)
    operation.refresh_from_db()
    # The whole region waits (its gate is held until then), and the attempt is not spent.
    assert operation.status == Status.WAITING and operation.dependency == "inference:eu-west"
    assert operation.attempts_spent == 0 and operation.attempts.get().outcome == "transient"
    gate = Gate.objects.get(key="inference:eu-west")
    assert gate.state == "open" and gate.open_until >= timezone.now() + timedelta(seconds=29)
    assert gates.tick()["probes"] == 0 and dispatcher.release_due() == 0  # not yet


def test_400_fails_at_once_without_automatic_retry(ai, session):
    ai.faults(region="eu-west", sequence=[400])
    operation = run_until_settled(question_op(session))
    assert operation.status == Status.FAILED and operation.attempts.count() == 1
    assert operation.error_code == "ai_rejected"


def test_retry_from_the_session_page_starts_a_linked_operation_and_finishes(ai, web, session):
    ai.faults(region="eu-west", sequence=[503] * 4)
    failed = run_until_settled(question_op(session))
    turn = InterviewTurn.objects.get(session=session)
    response = web.post(f"/interviews/{session.pk}/turns/{turn.pk}/retry/{failed.pk}",
                        {"reason": "service is back"}, **HTMX)
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    child = Operation.objects.get(parent=failed)
    assert (child.retry_number, child.channel, child.next_trigger) == (1, "web", Trigger.MANUAL)
    assert 'hx-trigger="every 1s"' in response.content.decode()  # the turn polls again
    run_until_settled(child)
    panel = web.get(f"/interviews/{session.pk}/turns/{turn.pk}/", **HTMX).content.decode()
    assert "PostgreSQL" in panel and "hx-trigger" not in panel
    assert Operation.objects.get(pk=failed.pk).status == Status.FAILED  # history kept


def test_retry_from_the_api_returns_the_new_operation(ai, api, session):
    ai.faults(region="eu-west", sequence=[503] * 4)
    failed = run_until_settled(question_op(session))
    body = api.post(f"/api/v1/operations/{failed.pk}/retry", format="json").json()
    assert body["parent_operation_id"] == str(failed.pk) and body["retry_count"] == 1
    assert body["id"] != str(failed.pk) and body["kind"] == "interview.question_generation"


def test_the_operation_page_shows_the_chain_and_every_attempt(ai, web, session):
    ai.faults(region="eu-west", sequence=[503, 503, 503, 503, 500, 200])
    failed = run_until_settled(question_op(session))
    child_id = web.post(f"{failed.get_absolute_url()}retry", {"reason": "again"})["Location"]
    child = Operation.objects.get(parent=failed)
    run_until_settled(child)
    page = web.get(child.get_absolute_url()).content.decode()
    assert failed.reference in page and child.reference in page and "“again”" in page
    assert page.count("<tr>") - 1 == 2  # the child's two attempts (header row excluded)
    assert "Manual" in page and "Auto" in page and child_id


def test_someone_elses_session_is_404(ai, client, other_user, session):
    client.force_login(other_user)
    assert client.get(session.get_absolute_url()).status_code == 404


def test_admin_shows_a_sessions_turns_as_a_record(client, session):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    page = client.get(f"/admin/interviews/interviewsession/{session.pk}/change/").content.decode()
    assert "Interview turns" in page and "turns-0-number" not in page  # shown, not editable
    assert 'name="turns-MAX_NUM_FORMS" value="0"' in page  # none can be added

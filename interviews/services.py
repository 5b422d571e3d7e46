"""The acts of interview practice: start a session, ask the next question, answer it."""
from django.db import transaction
from django.utils import timezone

from interviews.models import InterviewSession, InterviewTurn
from operations.services import submit


def start_session(owner, topic: str, region: str = "") -> InterviewSession:
    with transaction.atomic():
        session = InterviewSession.objects.create(owner=owner, topic=topic.strip(), region=region)
        ask_next_question(session)
    return session


def ask_next_question(session: InterviewSession) -> InterviewTurn:
    number = session.turns.count() + 1
    turn = InterviewTurn.objects.create(session=session, number=number)
    turn.question_operation = submit("interview.question_generation", session.owner,
                                     {"turn_id": turn.pk, "region": session.region})
    turn.save(update_fields=["question_operation"])
    return turn


def answer_question(turn: InterviewTurn, answer: str) -> InterviewTurn:
    turn.answer, turn.answered_at = answer.strip(), timezone.now()
    turn.feedback_operation = submit("interview.feedback_analysis", turn.session.owner,
                                     {"turn_id": turn.pk, "region": turn.session.region})
    turn.save(update_fields=["answer", "answered_at", "feedback_operation"])
    return turn

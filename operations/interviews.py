"""Interview practice: a session on a topic, turns of question -> answer -> feedback.

`interview.question_generation` and `interview.feedback_analysis` are engine kinds; the turn
holds the first operation of each, and the page follows its retry chain to the current one.
"""
from django.conf import settings
from django.db import models, transaction
from django.urls import reverse

from operations import inference
from operations.errors import PermanentError
from operations.kinds import register
from operations.retry_policy import RetryPolicy
from operations.services import submit

AI_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, factor=2.0, max_delay=30.0,
                        time_limit=120.0)
QUESTION_PROMPT = ("You are a friendly interviewer. Ask exactly one interview question about "
                   "the topic the candidate gives. No preamble.")
FEEDBACK_PROMPT = ("You give feedback on interview answers: one strength, one improvement, "
                   "in three sentences.")


class InterviewSession(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="interview_sessions")
    topic = models.CharField(max_length=200)
    region = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.topic} ({self.owner})"

    def get_absolute_url(self) -> str:
        return reverse("interviews:session", args=[self.pk])


class InterviewTurn(models.Model):
    session = models.ForeignKey(InterviewSession, on_delete=models.CASCADE, related_name="turns")
    number = models.PositiveSmallIntegerField()
    question = models.TextField(blank=True)
    question_operation = models.ForeignKey("operations.Operation", null=True,
                                           on_delete=models.SET_NULL, related_name="+")
    answer = models.TextField(blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    feedback = models.TextField(blank=True)
    feedback_operation = models.ForeignKey("operations.Operation", null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["session", "number"]
        constraints = [models.UniqueConstraint(fields=["session", "number"], name="one_turn_per_number")]

    @property
    def dom_id(self) -> str:
        return f"turn-{self.pk}"

    @property
    def busy(self) -> bool:
        """Is a question or feedback still being made (so the page should poll)?"""
        return any(op is not None and not op.is_terminal
                   for op in (self.question_current, self.feedback_current))

    @property
    def question_current(self):
        return self.question_operation.latest_in_chain() if self.question_operation else None

    @property
    def feedback_current(self):
        return self.feedback_operation.latest_in_chain() if self.feedback_operation else None


# --- acts -----------------------------------------------------------------------------------

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
    from django.utils import timezone

    turn.answer, turn.answered_at = answer.strip(), timezone.now()
    turn.feedback_operation = submit("interview.feedback_analysis", turn.session.owner,
                                     {"turn_id": turn.pk, "region": turn.session.region})
    turn.save(update_fields=["answer", "answered_at", "feedback_operation"])
    return turn


# --- engine kinds ---------------------------------------------------------------------------

def _turn(context) -> InterviewTurn:
    try:
        return InterviewTurn.objects.select_related("session").get(pk=context.input["turn_id"])
    except (InterviewTurn.DoesNotExist, KeyError):
        raise PermanentError("input_missing", "interview turn is gone") from None


def _turn_exists(input: dict) -> bool:
    return InterviewTurn.objects.filter(pk=input.get("turn_id")).exists()


@register("interview.question_generation", policy=AI_POLICY, label="Interview question",
          input_available=_turn_exists)
def generate_question(context):
    """Ask the AI for the next interview question of a session."""
    turn = _turn(context)
    messages = [{"role": "system", "content": QUESTION_PROMPT}]
    for earlier in turn.session.turns.filter(number__lt=turn.number).exclude(question=""):
        messages.append({"role": "assistant", "content": earlier.question})
        if earlier.answer:
            messages.append({"role": "user", "content": earlier.answer})
    messages.append({"role": "user", "content": turn.session.topic})
    reply = inference.chat(messages, region=context.input.get("region", ""),
                           context=f"operation={context.operation.pk} kind=question_generation")
    InterviewTurn.objects.filter(pk=turn.pk).update(question=reply.text)
    return {"question": reply.text, "model": reply.model, "seconds": round(reply.elapsed, 3)}


@register("interview.feedback_analysis", policy=AI_POLICY, label="Answer feedback",
          input_available=_turn_exists)
def analyse_answer(context):
    """Ask the AI for feedback on the answer to one question."""
    turn = _turn(context)
    messages = [{"role": "system", "content": FEEDBACK_PROMPT},
                {"role": "assistant", "content": turn.question},
                {"role": "user", "content": turn.answer}]
    reply = inference.chat(messages, region=context.input.get("region", ""),
                           context=f"operation={context.operation.pk} kind=feedback_analysis")
    InterviewTurn.objects.filter(pk=turn.pk).update(feedback=reply.text)
    return {"feedback": reply.text, "model": reply.model, "seconds": round(reply.elapsed, 3)}

"""The engine kinds of interview practice: write a question, analyse an answer. Both are AI
calls with the AI retry policy (4 attempts at 1 s, 2 s, 4 s plus jitter)."""
from interviews.models import InterviewTurn
from inference import client as inference
from operations.errors import PermanentError
from operations.kinds import register
from operations.retry_policy import AI_CALLS

QUESTION_PROMPT = ("You are a friendly interviewer. Ask exactly one interview question about "
                   "the topic the candidate gives. No preamble.")
FEEDBACK_PROMPT = ("You give feedback on interview answers: one strength, one improvement, "
                   "in three sentences.")


def _turn(context) -> InterviewTurn:
    try:
        return InterviewTurn.objects.select_related("session").get(pk=context.input["turn_id"])
    except (InterviewTurn.DoesNotExist, KeyError):
        raise PermanentError("input_missing", "interview turn is gone") from None


def _turn_exists(input: dict) -> bool:
    return InterviewTurn.objects.filter(pk=input.get("turn_id")).exists()


@register("interview.question_generation", policy=AI_CALLS, label="Interview question",
          input_available=_turn_exists, dependency=inference.dependency_of_input)
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


@register("interview.feedback_analysis", policy=AI_CALLS, label="Answer feedback",
          input_available=_turn_exists, dependency=inference.dependency_of_input)
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

"""The engine kind of a job's cell: ask one question in one region, with the AI retry policy.
When a cell settles (completed, or failed for good), the next waiting cells of its job start."""
from executions import services
from executions.models import Execution, Question
from inference import client as inference
from operations.errors import PermanentError, TransientError
from operations.kinds import register
from operations.retry_policy import AI_CALLS

ANSWER_PROMPT = "Answer the question concisely, in at most three sentences."


def _execution(context) -> Execution:
    try:
        return Execution.objects.select_related("job").get(pk=context.input["execution_id"])
    except (Execution.DoesNotExist, KeyError):
        raise PermanentError("input_missing", "execution is gone") from None


def _exists(input: dict) -> bool:
    return Execution.objects.filter(pk=input.get("execution_id")).exists()


def _settled(operation) -> None:
    job_id = operation.input.get("job_id")
    services.start_waiting_cells(job_id)
    services.announce_if_finished(job_id)


@register("executions.answer", policy=AI_CALLS, label="Question in a region",
          input_available=_exists, on_success=_settled, on_failure=_settled,
          dependency=inference.dependency_of_input)
def answer_question(context):
    """Ask the cell's question in the cell's region (X-Region) of the job's model."""
    execution = _execution(context)
    _injected_fault(context)
    question = Question.objects.get(job_id=execution.job_id, index=execution.question_index)
    reply = inference.chat(
        [{"role": "system", "content": ANSWER_PROMPT}, {"role": "user", "content": question.text}],
        region=execution.region, model=execution.job.model,
        context=f"operation={context.operation.pk} kind=executions.answer")
    return {"answer": reply.text, "model": reply.model, "region": execution.region,
            "seconds": round(reply.elapsed, 3)}


def _injected_fault(context) -> None:
    """The demo's cells that fail: input {"fault": code} fails every attempt of the first
    operation of the chain with that error code (a manual retry then succeeds)."""
    code = context.input.get("fault")
    if not code or context.operation.retry_number:
        return
    if code == "ai_rejected":
        raise PermanentError(code, "injected fault")
    raise TransientError(code, "injected fault")

"""The phases as engine kinds. Each writes its PhaseOutput in the transaction of its fenced
completion, and when it settles the pipeline advances (the essay's next phase, or the
batch-only phase once every essay is ready)."""
import re

from batches import pipeline
from batches.models import Batch, Essay, PhaseOutput
from inference import client as inference
from operations.errors import PermanentError, TransientError, register_message
from operations.kinds import Completion, register
from operations.models import Status
from operations.retry_policy import AI_CALLS, RetryPolicy

MIN_WORDS = 50
LOCAL = RetryPolicy(max_attempts=3, time_limit=300)
JUDGEMENT = RetryPolicy(max_attempts=4, base_delay=1.0, factor=2.0, max_delay=30.0,
                        time_limit=1800)
CHECKPOINT_EVERY = 20  # judgements between checkpoints
FEEDBACK_PROMPT = ("You give feedback on a student's essay: one strength, one thing to improve, "
                   "in three sentences.")
COMPARE_PROMPT = ("Compare the two essays separated by a line '---'. Answer 'A' or 'B' for the "
                  "better one, then one sentence why.")

register_message("essay_too_short", f"This essay is too short to judge (under {MIN_WORDS} words).",
                 "Nothing: it is left out of the later phases and the ranking. To include it, "
                 "submit a longer essay in a new batch.")

_speller = None


def _spell_checker():
    global _speller
    if _speller is None:
        from spellchecker import SpellChecker

        # Suggestions one edit away: distance 2 costs a third of a second per unknown word.
        _speller = SpellChecker(distance=1)  # its dictionary loads once per worker process
    return _speller


def _essay(context) -> Essay:
    try:
        return Essay.objects.select_related("batch").get(pk=context.input["essay_id"])
    except (Essay.DoesNotExist, KeyError, TypeError):
        raise PermanentError("input_missing", "essay is gone") from None


def _exists(input: dict) -> bool:
    if input.get("essay_id") is None:
        return Batch.objects.filter(pk=input.get("batch_id")).exists()
    return Essay.objects.filter(pk=input.get("essay_id")).exists()


def _injected_fault(context) -> None:
    """Drills and the demo: input {"faults": {phase: code}} fails every attempt of the first
    operation of that phase's chain (a manual retry then runs normally)."""
    code = (context.input.get("faults") or {}).get(context.input["phase"])
    if not code or context.operation.retry_number:
        return
    if code in ("essay_too_short", "ai_rejected"):
        raise PermanentError(code, "injected fault")
    raise TransientError(code, "injected fault")


def _written(context, batch_id, essay_id, output: dict) -> Completion:
    """The result, and the PhaseOutput written with the completion (once)."""
    operation = context.operation
    output = {**output, "is_retry": operation.is_retry, "retry_reason": operation.retry_reason}
    return Completion(output, write=lambda: PhaseOutput.objects.create(
        batch_id=batch_id, phase=context.input["phase"], essay_id=essay_id,
        operation_id=operation.pk, output=output))


def _advance(operation) -> None:
    batch_id = operation.input["batch_id"]
    if operation.status == Status.FAILED:
        pipeline.announce_failure(batch_id, operation)
    pipeline.advance(batch_id)
    pipeline.announce_if_finished(batch_id)


def phase(name: str, policy: RetryPolicy, label: str):
    return register(pipeline.kind_of(name), policy=policy, label=label, input_available=_exists,
                    on_success=_advance, on_failure=_advance)


@phase("spellcheck", LOCAL, "Essay: spelling")
def spellcheck(context):
    """Misspelled words, each with up to five suggestions."""
    essay = _essay(context)
    _injected_fault(context)
    speller = _spell_checker()
    words = re.findall(r"[A-Za-z][A-Za-z']*", essay.text)
    unknown = sorted(speller.unknown(w.lower() for w in words if len(w) > 1))[:200]
    misspellings = [{"word": word, "suggestions": sorted(speller.candidates(word) or [])[:5]
                     if len(word) <= 15 else []} for word in unknown]
    return _written(context, essay.batch_id, essay.pk,
                    {"misspellings": misspellings, "count": len(misspellings)})


@phase("nlp", LOCAL, "Essay: language")
def language(context):
    """Words, sentences and a readability score; an essay under 50 words fails for good."""
    import textstat

    essay = _essay(context)
    _injected_fault(context)
    words = textstat.lexicon_count(essay.text)
    if words < MIN_WORDS:
        raise PermanentError("essay_too_short", f"{words} words")
    return _written(context, essay.batch_id, essay.pk, {
        "words": words, "sentences": textstat.sentence_count(essay.text),
        "reading_ease": round(textstat.flesch_reading_ease(essay.text), 1)})


@phase("ai_feedback", AI_CALLS, "Essay: AI feedback")
def ai_feedback(context):
    """Feedback on the essay from the AI provider, in the batch's region."""
    essay = _essay(context)
    _injected_fault(context)
    reply = inference.chat([{"role": "system", "content": FEEDBACK_PROMPT},
                            {"role": "user", "content": essay.text}],
                           region=essay.batch.region,
                           context=f"operation={context.operation.pk} kind=batches.ai_feedback")
    return _written(context, essay.batch_id, essay.pk,
                    {"feedback": reply.text, "model": reply.model})


@phase("cj_assessment", JUDGEMENT, "Batch: comparative judgement")
def comparative_judgement(context):
    """Pairwise judgements of every essay not left out (each in at least three pairs where
    there are four or more), asked of the AI provider, and a ranking by wins.

    A pair the provider fails transiently is passed over and the others are still asked; the
    attempt then fails transiently, and the next one (after the engine's backoff, never
    sooner than a Retry-After) asks only the pairs not judged yet: judgements are
    checkpointed. So each attempt makes all the progress it can, and the attempt budget bounds
    how often the provider is tried again, not how many pairs there are."""
    batch = Batch.objects.get(pk=context.input["batch_id"])
    _injected_fault(context)
    essays = pipeline.read(batch).included()
    judged = dict((context.checkpoint or {}).get("judgements", {}))
    missed = []
    for n, (first, second) in enumerate(pairs(len(essays)), 1):
        key = f"{essays[first].pk}:{essays[second].pk}"
        if key in judged:
            continue
        try:
            judged[key] = _judge(context, batch, essays[first], essays[second])
        except TransientError as error:
            missed.append(error)
        if n % CHECKPOINT_EVERY == 0:
            context.heartbeat(done=len(judged), checkpoint={"judgements": judged})
    context.heartbeat(done=len(judged), checkpoint={"judgements": judged})
    if missed:
        waits = [e.retry_after for e in missed if e.retry_after is not None]
        raise TransientError(missed[-1].code, f"{len(missed)} pairs not judged yet",
                             retry_after=max(waits) if waits else None)
    return _written(context, batch.pk, None, {"judgements": judged,
                                              "ranking": ranking(essays, judged)})


def pairs(n: int) -> list[tuple[int, int]]:
    """Pairs (i, i+1) and (i, i+2) around the circle: each of n ≥ 4 essays is in at least
    three; fewer essays are compared all with all."""
    found = set()
    for offset in (1, 2):
        for i in range(n):
            j = (i + offset) % n
            if i != j:
                found.add((min(i, j), max(i, j)))
    return sorted(found)


def _judge(context, batch, first: Essay, second: Essay) -> str:
    reply = inference.chat([{"role": "system", "content": COMPARE_PROMPT},
                            {"role": "user", "content": f"{first.text}\n---\n{second.text}"}],
                           region=batch.region,
                           context=f"operation={context.operation.pk} kind=batches.cj_assessment")
    return "A" if reply.text.strip().upper().startswith("A") else "B"


def ranking(essays: list[Essay], judged: dict) -> list[dict]:
    """Most wins first; ties keep the essays' order."""
    wins = {essay.pk: 0 for essay in essays}
    seen = {essay.pk: 0 for essay in essays}
    for key, better in judged.items():
        first, second = (int(part) for part in key.split(":"))
        winner = first if better == "A" else second
        if winner in wins:
            wins[winner] += 1
        for essay_id in (first, second):
            if essay_id in seen:
                seen[essay_id] += 1
    ordered = sorted(essays, key=lambda essay: (-wins[essay.pk], essay.index))
    return [{"rank": rank, "essay_id": essay.pk, "index": essay.index, "wins": wins[essay.pk],
             "comparisons": seen[essay.pk]} for rank, essay in enumerate(ordered, 1)]

"""Idempotency-Key: a repeated call with the same key and body gets the first answer again."""
import hashlib

from django.db import IntegrityError, transaction
from rest_framework.response import Response

from operations.api.problems import problem
from operations.models import IdempotencyRecord
from operations.refusals import declare

HEADER = "Idempotency-Key"
INVALID_KEY = declare("invalid_idempotency_key", 400,
                      "Idempotency-Key is at most 200 characters.")
IN_PROGRESS = declare("idempotency_in_progress", 409, "A request with this Idempotency-Key is "
                      "still being handled. Try again shortly.")
KEY_REUSED = declare("idempotency_key_reused", 422, "This Idempotency-Key was used for a "
                     "different request. Use a new key.")
# What a call that takes an Idempotency-Key can meet.
REFUSALS = (INVALID_KEY, IN_PROGRESS, KEY_REUSED)


def respond_once(request, handle):
    """Run `handle()` once per (user, key); replay its answer for repeats of the same request.
    A different request under a used key is 422; a repeat while the first runs is 409."""
    key = request.headers.get(HEADER)
    if not key:
        return handle()
    if len(key) > 200:
        return problem(400, INVALID_KEY, "Idempotency-Key is at most 200 characters.")
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.path.encode() + b"\n" + request.body).hexdigest()
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(user=request.user, key=key,
                                                      request_hash=digest)
    except IntegrityError:
        return _replay(IdempotencyRecord.objects.get(user=request.user, key=key), digest)
    try:
        response = handle()
    except Exception:
        record.delete()  # nothing was answered, so the key stays free to use again
        raise
    record.status_code, record.body = response.status_code, response.data
    record.save(update_fields=["status_code", "body"])
    return response


def _replay(record, digest):
    if record.request_hash != digest:
        return problem(422, KEY_REUSED,
                       "This Idempotency-Key was used for a different request. Use a new key.")
    if record.status_code is None:
        return problem(409, IN_PROGRESS,
                       "A request with this Idempotency-Key is still being handled. Try again shortly.")
    response = Response(record.body, status=record.status_code,
                        content_type="application/problem+json" if record.status_code >= 400
                        else None)
    response["Idempotent-Replayed"] = "true"
    return response

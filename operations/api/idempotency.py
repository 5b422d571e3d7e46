"""Idempotency-Key: a repeated call with the same key and body gets the first answer again."""
import hashlib

from django.db import IntegrityError, transaction
from rest_framework.response import Response

from operations.api.problems import problem
from operations.models import IdempotencyRecord

HEADER = "Idempotency-Key"


def respond_once(request, handle):
    """Run `handle()` once per (user, key); replay its answer for repeats of the same request.
    A different request under a used key is 422; a repeat while the first runs is 409."""
    key = request.headers.get(HEADER)
    if not key:
        return handle()
    if len(key) > 200:
        return problem(400, "invalid_idempotency_key", "Idempotency-Key is at most 200 characters.")
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
        return problem(422, "idempotency_key_reused",
                       "This Idempotency-Key was used for a different request. Use a new key.")
    if record.status_code is None:
        return problem(409, "idempotency_in_progress",
                       "A request with this Idempotency-Key is still being handled. Try again shortly.")
    response = Response(record.body, status=record.status_code,
                        content_type="application/problem+json" if record.status_code >= 400
                        else None)
    response["Idempotent-Replayed"] = "true"
    return response

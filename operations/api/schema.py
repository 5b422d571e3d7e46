"""The API's contract for refusals: every error answer is `application/problem+json` with a
stable `code`; each endpoint lists the codes it can give, with an example of each, and every
endpoint also lists the ones any call can meet (not signed in, the database away)."""
from collections import defaultdict

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from operations.api.problems import TITLES
from operations.api.serializers import ProblemSerializer

PROBLEM_JSON = "application/problem+json"

# code: (HTTP status, an example of what the refusal says)
CODES = {
    "invalid": (400, "Some fields are not valid."),
    "bad_request": (400, "This request could not be read."),
    "parse_error": (400, "JSON parse error - Expecting value: line 1 column 1 (char 0)"),
    "reason_too_long": (400, "The reason may be at most 500 characters."),
    "invalid_idempotency_key": (400, "Idempotency-Key is at most 200 characters."),
    "cell_mismatch": (400, "This execution is us-east × question 0, not eu-west × question 0."),
    "unknown_phase": (400, "There is no phase 'grammar'; the phases are spellcheck, nlp, "
                           "ai_feedback, cj_assessment."),
    "batch_only_phase": (400, "cj_assessment runs on the whole batch; retry it without "
                              "essay_ids."),
    "unknown_essay": (400, "Some essay_ids are not essays of this batch."),
    "no_file": (400, "Send the export as the multipart field 'file'."),
    "empty_file": (400, "The file is empty."),
    "unsupported_file": (400, "This is not a ZIP or JSON file."),
    "damaged_zip": (400, "The ZIP file is damaged."),
    "no_conversations": (400, "There are no conversations in it."),
    "several_conversations": (400, "The ZIP holds more than one conversations.json."),
    "zip_bomb": (400, "The ZIP would inflate far beyond its size."),
    "unsafe_zip": (400, "The ZIP holds unsafe names."),
    "encrypted_zip": (400, "The ZIP is encrypted."),
    "malformed_json": (400, "The JSON is malformed."),
    "not_an_export": (400, "This JSON is not a ChatGPT or Claude export."),
    "empty_export": (400, "The export holds no conversations."),
    "not_authenticated": (401, "Authentication credentials were not provided."),
    "authentication_failed": (401, "Invalid token."),
    "not_found": (404, "No operation with that id."),
    "no_profile": (404, "Upload an export first."),
    "method_not_allowed": (405, 'Method "PUT" not allowed.'),
    "not_acceptable": (406, "Could not satisfy the request Accept header."),
    "not_failed": (409, "Only a failed operation can be retried; this one is completed."),
    "already_retried": (409, "This operation has already been retried."),
    "input_missing": (409, "The stored input for this is gone or has changed. Upload it again."),
    "not_cancellable": (409, "Only a pending or scheduled operation can be cancelled."),
    "nothing_to_retry": (409, "Nothing failed in ai_feedback."),
    "phase_not_ready": (409, "Earlier phases of cj_assessment have not finished (some are "
                             "running or failed): retry those first."),
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still being "
                                     "handled. Try again shortly."),
    "file_too_large": (413, "The file is larger than 1024 MB."),
    "unsupported_media_type": (415, 'Unsupported media type "text/plain" in request.'),
    "idempotency_key_reused": (422, "This Idempotency-Key was used for a different request. "
                                    "Use a new key."),
    "retry_limit_reached": (429, "This has been retried 3 times, the most allowed."),
    "throttled": (429, "Too many requests. Try again in 12 seconds."),
    "service_unavailable": (503, "Rebound's database is briefly unavailable. Try again in a "
                                 "few seconds."),
}
# What any call can meet, whatever the endpoint.
ALWAYS = ("not_authenticated", "authentication_failed", "method_not_allowed", "not_acceptable",
          "service_unavailable")
# What a call with a body can meet.
WITH_BODY = ("parse_error", "unsupported_media_type", "bad_request")
UPLOAD = ("no_file", "empty_file", "unsupported_file", "damaged_zip", "no_conversations",
          "several_conversations", "zip_bomb", "unsafe_zip", "encrypted_zip", "malformed_json",
          "not_an_export", "empty_export", "file_too_large")
IDEMPOTENT = ("invalid_idempotency_key", "idempotency_in_progress", "idempotency_key_reused")


def example(code: str) -> dict:
    status, detail = CODES[code]
    return {"type": f"about:blank#{code}", "title": TITLES.get(status, "Error"),
            "status": status, "code": code, "detail": detail}


def problems(*codes, body: bool = False) -> dict:
    """Responses for these refusal codes (and those every call can meet), by status, each
    with an example per code."""
    by_status = defaultdict(list)
    for code in dict.fromkeys([*codes, *ALWAYS, *(WITH_BODY if body else ())]):
        by_status[CODES[code][0]].append(code)
    return {(status, PROBLEM_JSON): OpenApiResponse(
        ProblemSerializer, description="Refused: " + ", ".join(f"`{c}`" for c in codes),
        examples=[OpenApiExample(code, value=example(code), status_codes=[str(status)],
                                 response_only=True) for code in codes])
        for status, codes in sorted(by_status.items())}


def contract(success: dict, *codes, body: bool = False) -> dict:
    """An endpoint's whole contract: its successful answers, then every refusal."""
    return {**success, **problems(*codes, body=body)}

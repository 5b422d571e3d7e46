"""Problem-style error bodies with a stable `code` for every refusal the API makes."""
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from operations.refusals import declare
from operations.services import RetryRefused

# What DRF itself refuses, as this handler answers it.
INVALID = declare("invalid", 400, "Some fields are not valid.")
BAD_REQUEST = declare("bad_request", 400, "This request could not be read.")
PARSE_ERROR = declare("parse_error", 400,
                      "JSON parse error - Expecting value: line 1 column 1 (char 0)")
# A signed-in page session that posts without its CSRF token.
PERMISSION_DENIED = declare("permission_denied", 403, "CSRF Failed: CSRF token missing.")
NOT_AUTHENTICATED = declare("not_authenticated", 401,
                            "Authentication credentials were not provided.")
AUTHENTICATION_FAILED = declare("authentication_failed", 401, "Invalid token.")
METHOD_NOT_ALLOWED = declare("method_not_allowed", 405, 'Method "PUT" not allowed.')
NOT_ACCEPTABLE = declare("not_acceptable", 406, "Could not satisfy the request Accept header.")
UNSUPPORTED_MEDIA_TYPE = declare("unsupported_media_type", 415,
                                 'Unsupported media type "text/plain" in request.')
THROTTLED = declare("throttled", 429, "Too many requests. Try again in 12 seconds.")

TITLES = {
    400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Too large", 415: "Unsupported media type",
    422: "Unprocessable", 429: "Too many requests", 503: "Service unavailable",
}


def problem(status_code: int, code: str, detail: str, **extra) -> Response:
    body = {"type": f"about:blank#{code}", "title": TITLES.get(status_code, "Error"),
            "status": status_code, "code": code, "detail": detail, **extra}
    return Response(body, status=status_code, content_type="application/problem+json")


def refusal(exc: RetryRefused) -> Response:
    return problem(exc.status, exc.code, exc.message, **exc.extra)


def problem_exception_handler(exc, context):
    """DRF's exceptions as problem bodies; throttling says `throttled`, never the retry limit's
    `retry_limit_reached`, so a client can tell "slow down" from "no more retries"."""
    if isinstance(exc, RetryRefused):
        return refusal(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = problem(400, INVALID, "Some fields are not valid.", errors=response.data)
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        body = problem(429, THROTTLED,
                       f"Too many requests. Try again in {wait} seconds.", retry_after=wait)
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        code = getattr(detail, "code", None) or exc.default_code
        body = problem(response.status_code, str(code), str(detail))
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            body[header] = response[header]
    return body

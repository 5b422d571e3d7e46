"""Problem-style error bodies with a stable `code` for every refusal the API makes."""
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from operations.services import RetryRefused

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
        body = problem(400, "invalid", "Some fields are not valid.", errors=response.data)
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        body = problem(429, "throttled",
                       f"Too many requests. Try again in {wait} seconds.", retry_after=wait)
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        code = getattr(detail, "code", None) or exc.default_code
        body = problem(response.status_code, str(code), str(detail))
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            body[header] = response[header]
    return body

"""The API's contract for refusals: every error answer is `application/problem+json` with a
stable `code`; each endpoint lists the codes it can give, with an example of each, and every
endpoint also lists the ones any call can meet (not signed in, the database away). Codes and
their examples come from the registry (`operations.refusals`), declared where each is defined."""
from collections import defaultdict

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from operations import lockout, middleware, refusals
from operations.api import idempotency
from operations.api import problems as api_problems
from operations.api.problems import TITLES
from operations.api.serializers import ProblemSerializer

PROBLEM_JSON = "application/problem+json"

# What any call can meet, whatever the endpoint.
ALWAYS = (api_problems.NOT_AUTHENTICATED, api_problems.AUTHENTICATION_FAILED,
          api_problems.METHOD_NOT_ALLOWED, api_problems.NOT_ACCEPTABLE, lockout.LOCKED_OUT,
          middleware.SERVICE_UNAVAILABLE)
# What a POST can meet (a page session's call without its CSRF token), and a call with a body.
POSTED = (api_problems.PERMISSION_DENIED,)
WITH_BODY = (api_problems.PARSE_ERROR, api_problems.UNSUPPORTED_MEDIA_TYPE,
             api_problems.BAD_REQUEST, *POSTED)
IDEMPOTENT = idempotency.REFUSALS


def example(code: str) -> dict:
    status, detail = refusals.get(code).status, refusals.get(code).example
    return {"type": f"about:blank#{code}", "title": TITLES.get(status, "Error"),
            "status": status, "code": code, "detail": detail}


def problems(*codes, body: bool = False, post: bool = False) -> dict:
    """Responses for these refusal codes (and those every call can meet), by status, each
    with an example per code."""
    by_status = defaultdict(list)
    extra = WITH_BODY if body else POSTED if post else ()
    for code in dict.fromkeys([*codes, *ALWAYS, *extra]):
        by_status[refusals.get(code).status].append(code)
    return {(status, PROBLEM_JSON): OpenApiResponse(
        ProblemSerializer, description="Refused: " + ", ".join(f"`{c}`" for c in codes),
        examples=[OpenApiExample(code, value=example(code), status_codes=[str(status)],
                                 response_only=True) for code in codes])
        for status, codes in sorted(by_status.items())}


def contract(success: dict, *codes, body: bool = False, post: bool = False) -> dict:
    """An endpoint's whole contract: its successful answers, then every refusal (`body`: it
    reads a JSON body; `post`: it is a POST without one)."""
    return {**success, **problems(*codes, body=body, post=post)}

"""What a paused sign-in answers (django-axes calls `respond` once a client has failed too
often): people get a page that says why and what to do, API clients a `locked_out` problem."""
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.http import JsonResponse
from django.shortcuts import render

from operations.refusals import declare

LOCKED_OUT = declare("locked_out", 429, "Too many failed sign-ins from this address. Try again "
                     "in 15 minutes, or ask an administrator to lift the pause.")


def message(cool_off_seconds: int) -> str:
    minutes = max(1, round(cool_off_seconds / 60))
    return (f"Too many failed sign-ins from this address. Try again in {minutes} minute"
            f"{'' if minutes == 1 else 's'}, or ask an administrator to lift the pause.")


def seconds_left(request) -> int:
    """The cool-off of a paused client, in seconds."""
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else 0


def respond(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    seconds = seconds_left(request)
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"type": f"about:blank#{LOCKED_OUT}", "title": "Too many requests", "status": 429,
             "code": LOCKED_OUT, "detail": message(seconds), "retry_after": seconds},
            status=429, content_type="application/problem+json")
        response["Retry-After"] = str(seconds)
        return response
    return render(request, "registration/locked_out.html", {
        "failure_limit": get_failure_limit(request, credentials),
        "username": get_client_username(request, credentials) or "",
        "cooloff_timedelta": cool_off}, status=429)

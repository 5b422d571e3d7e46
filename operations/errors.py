"""What can go wrong in an operation, as the engine classifies it.

Handlers raise TransientError or PermanentError. Anything else is classified here: a database
OperationalError is transient (the connection comes back), everything unknown is permanent
(a bug is not fixed by retrying).
"""
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from django.db import OperationalError

# The only texts users ever see for a failure: one fixed message per code.
USER_MESSAGES = {
    "ai_unavailable": "AI service unavailable. It is usually back within minutes.",
    "ai_rate_limited": "The AI service is busy (rate limited).",
    "ai_timeout": "The AI service took too long to answer.",
    "ai_connection": "Could not reach the AI service.",
    "ai_bad_response": "The AI service sent an answer Rebound could not read.",
    "ai_rejected": "The AI service refused the request.",
    "database_unavailable": "The database was briefly unavailable.",
    "crashed_repeatedly": "The worker running this stopped unexpectedly several times.",
    "worker_lost": "The worker running this stopped unexpectedly.",
    "worker_stopped": "The worker running this was restarted; it continues shortly.",
    "timed_out": "This took longer than its time limit.",
    "input_missing": "The stored input for this is gone.",
    "internal_error": "Something went wrong on our side.",
    "invalid_input": "The input for this could not be processed.",
    "export_damaged": "Your export file is damaged part-way through, so reading it stopped.",
    "import_interrupted": "Building your deep memory was interrupted part-way.",
    "dependency_down": "A service this needs stayed unavailable for too long.",
}

WHAT_TO_DO = {
    "ai_unavailable": "Wait a few minutes, then retry.",
    "ai_rate_limited": "Wait a minute, then retry.",
    "ai_timeout": "Retry; if it keeps happening, try again later.",
    "ai_connection": "Retry; if it keeps happening, try again later.",
    "ai_bad_response": "Retry once; if it fails again, contact support with the reference.",
    "ai_rejected": "Contact support with the reference; retrying will not help.",
    "database_unavailable": "Retry.",
    "crashed_repeatedly": "Retry once; if it crashes again, contact support with the reference.",
    "worker_lost": "Retry.",
    "worker_stopped": "Nothing: it continues by itself.",
    "timed_out": "Retry; it resumes where it stopped.",
    "input_missing": "Upload the file again.",
    "internal_error": "Retry once; if it fails again, contact support with the reference.",
    "invalid_input": "Check the input and submit it again.",
    "export_damaged": "Download your export again and upload the new file; what was read so "
                      "far is kept.",
    "import_interrupted": "Retry: it resumes where it stopped, nothing is read twice.",
    "dependency_down": "Retry once the service is back; nothing was lost.",
}


def register_message(code: str, message: str, what_to_do: str) -> None:
    """A workload's own error code, with the text users see and what they can do about it."""
    USER_MESSAGES[code] = message
    WHAT_TO_DO[code] = what_to_do


def user_message(code: str) -> str:
    return USER_MESSAGES.get(code, USER_MESSAGES["internal_error"])


def what_to_do(code: str) -> str:
    return WHAT_TO_DO.get(code, WHAT_TO_DO["internal_error"])


class OperationError(Exception):
    """A failure with a stable code; `detail` stays on the server."""

    transient = False
    default_code = "internal_error"

    def __init__(self, code: str | None = None, detail: str = "", *, message: str | None = None,
                 retry_after: float | None = None, dependency_down: bool = False):
        self.code = code or self.default_code
        self.message = message or user_message(self.code)
        self.detail = detail
        self.retry_after = retry_after
        # "The service is away" (refused, reset, timed out, 502/503/504), as the client that
        # called it judged: counted by the gate of the operation's dependency.
        self.dependency_down = dependency_down
        super().__init__(f"{self.code}: {detail}" if detail else self.code)


class TransientError(OperationError):
    transient = True
    default_code = "ai_unavailable"


class PermanentError(OperationError):
    transient = False


class LeaseLost(Exception):
    """The attempt no longer holds the operation's lease; stop without writing anything."""


class WorkerStopping(Exception):
    """The worker was asked to stop (SIGTERM): hand the operation back, it is not a failure."""


class TimeLimitExceeded(Exception):
    """The attempt ran past its kind's time limit."""


@dataclass(frozen=True)
class Classified:
    transient: bool
    code: str
    message: str
    detail: str
    retry_after: float | None = None
    dependency_down: bool = False


def classify(exc: BaseException) -> Classified:
    """Map any exception raised by a handler to the engine's view of it."""
    if isinstance(exc, OperationError):
        return Classified(exc.transient, exc.code, exc.message, exc.detail, exc.retry_after,
                          exc.dependency_down)
    if isinstance(exc, TimeLimitExceeded):
        return Classified(True, "timed_out", user_message("timed_out"), str(exc))
    if isinstance(exc, OperationalError):
        return Classified(True, "database_unavailable", user_message("database_unavailable"),
                          f"{type(exc).__name__}: {exc}")
    return Classified(False, "internal_error", user_message("internal_error"),
                      f"{type(exc).__name__}: {exc}")


def parse_retry_after(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), clamped to [0, cap].

    None when the header is absent or unreadable: the policy's own backoff applies then.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)

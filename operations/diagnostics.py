"""Built-in operation kinds for trying the engine out: in the demo, benchmarks and tests."""
import time

from operations.errors import PermanentError, TransientError
from operations.kinds import register
from operations.retry_policy import RetryPolicy


@register("diagnostics.noop", label="No-op")
def noop(context):
    """Does nothing; measures the engine's own cost."""
    return {"ok": True}


@register("diagnostics.sleep", label="Sleep",
          policy=RetryPolicy(max_attempts=3, time_limit=120))
def sleep(context):
    """Sleeps `seconds` (heartbeating) on the attempts listed in `slow_attempts` (all if absent)."""
    seconds = float(context.input.get("seconds", 1))
    slow = context.input.get("slow_attempts")
    if slow is None or context.attempt_number in slow:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
            context.heartbeat()
    return {"slept_on_attempt": context.attempt_number}


@register("diagnostics.backoff", label="Backoff probe", policy=RetryPolicy(max_attempts=4))
def backoff(context):
    """Fails transiently on attempts 1-3, succeeds on 4: shows the 1 s, 2 s, 4 s schedule."""
    if context.attempt_number < 4:
        raise TransientError("ai_unavailable", "backoff probe")
    return {"attempts": context.attempt_number}


@register("diagnostics.flaky", label="Flaky")
def flaky(context):
    """Fails with `error` ("transient" or "permanent") on the attempts in `fail_attempts`,
    until the manual retry numbered `succeed_on_retry`."""
    if context.operation.retry_number >= context.input.get("succeed_on_retry", 10**6):
        return {"succeeded_on_attempt": context.attempt_number}
    if context.attempt_number in context.input.get("fail_attempts", []):
        if context.input.get("error", "transient") == "permanent":
            raise PermanentError("invalid_input", "told to fail permanently")
        raise TransientError("ai_unavailable", "told to fail transiently",
                             retry_after=context.input.get("retry_after"))
    return {"succeeded_on_attempt": context.attempt_number}

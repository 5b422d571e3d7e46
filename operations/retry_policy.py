"""How each kind of operation retries: attempts, backoff, jitter, crash and time limits."""
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    # Jitter adds up to this fraction of the delay, so retries of many operations that failed
    # together do not arrive together.
    jitter: float = 0.2
    # A poison operation that kills its worker this many times is failed, not recovered again.
    max_crashes: int = 3
    # Seconds one attempt may run; enforced at each heartbeat and by lease recovery.
    time_limit: float = 600.0

    def backoff(self, attempt_number: int) -> float:
        """Delay before the try after `attempt_number` (1 s, 2 s, 4 s… for the defaults)."""
        delay = min(self.base_delay * self.factor ** (attempt_number - 1), self.max_delay)
        return delay * (1 + random.uniform(0, self.jitter))

    def delay_after(self, attempt_number: int, retry_after: float | None) -> float:
        """Backoff, but never sooner than a Retry-After the provider asked for."""
        delay = self.backoff(attempt_number)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def allows_another(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts


# Calls to an AI provider: the first try and 3 automatic retries, at 1 s, 2 s and 4 s plus
# jitter (never sooner than a Retry-After); only transient errors are retried.
AI_CALLS = RetryPolicy(max_attempts=4, base_delay=1.0, factor=2.0, max_delay=30.0,
                       time_limit=120.0)

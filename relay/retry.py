"""The relay's own retry layer (tenacity), on top of botocore's transport retries.

botocore (standard mode, 3 attempts) retries throttling, 5xx and connection errors of a single call.
Tenacity retries the *named domain conditions* a second call can fix — a `TransactionConflict`, SQS
entries that failed without the sender's fault, a call whose transport retries ran out — and never past
the time the caller gives it (the invocation deadline or the lease, whichever is sooner). See ADR 0006.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait_seconds: float = 0.05
    max_wait_seconds: float = 1.0

    def retrying(self, *, budget_seconds: float, retry_on: tuple[type[BaseException], ...]) -> Retrying:
        """A tenacity loop that stops after `attempts` or before sleeping past `budget_seconds`."""
        return Retrying(
            retry=retry_if_exception_type(retry_on),
            stop=stop_after_attempt(self.attempts) | stop_before_delay(max(budget_seconds, 0.0)),
            wait=wait_random_exponential(multiplier=self.initial_wait_seconds, max=self.max_wait_seconds),
            reraise=True,
        )


def backoff_seconds(attempts: int, *, cap_seconds: int, jitter: float) -> float:
    """Backoff before the next try of an entry after `attempts` counted failures: exponential from 2 s,
    capped, with full jitter in [50 %, 100 %] so retried entries don't return in lockstep."""
    base = min(float(cap_seconds), 2.0 * 2.0 ** max(attempts - 1, 0))
    return base * (0.5 + 0.5 * jitter)

"""The relay's own retry layer (tenacity), on top of botocore's transport retries.

botocore (standard mode, 3 attempts) retries throttling, 5xx and connection errors of a single call.
Tenacity retries the *named domain conditions* a second call can fix — a `TransactionConflict`, SQS
entries that failed without the sender's fault, a call whose transport retries ran out — and never past
the time the caller gives it (the invocation deadline or the lease, whichever is sooner). See ADR 0006.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    before_nothing,
    retry_base,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait_seconds: float = 0.05
    max_wait_seconds: float = 1.0

    def retrying(
        self,
        *,
        budget_seconds: float,
        retry_on: tuple[type[BaseException], ...],
        retry_while: Callable[[Any], bool] | None = None,
        before_retry: Callable[[], None] | None = None,
    ) -> Retrying:
        """A tenacity loop that stops after `attempts` or before sleeping past `budget_seconds`.

        It retries the exceptions `retry_on` and, with `retry_while`, a result that asks for another
        attempt (work left undone, not an error). `before_retry` is tenacity's `before` hook for every
        attempt but the first, run once its wait is over: where callers count their retries, and where a
        retry can still be called off. When the attempts or the budget run out, the last attempt's outcome
        stands: its exception is raised again (not wrapped in a `RetryError`), or its result returned."""
        retry: retry_base = retry_if_exception_type(retry_on)
        if retry_while is not None:
            retry = retry | retry_if_result(retry_while)
        return Retrying(
            retry=retry,
            stop=stop_after_attempt(self.attempts) | stop_before_delay(max(budget_seconds, 0.0)),
            wait=wait_random_exponential(multiplier=self.initial_wait_seconds, max=self.max_wait_seconds),
            before=_on_retries(before_retry) if before_retry is not None else before_nothing,
            retry_error_callback=_last_outcome,
        )


def _on_retries(hook: Callable[[], None]) -> Callable[[RetryCallState], None]:
    """`hook` as a tenacity `before` callback that skips the first attempt: it sees only retries."""

    def before(retry_state: RetryCallState) -> None:
        if retry_state.attempt_number > 1:
            hook()

    return before


def _last_outcome(retry_state: RetryCallState) -> Any:
    """What a loop that gave up hands back: the last attempt's result, or its exception raised again."""
    if retry_state.outcome is None:  # pragma: no cover - tenacity gives up only after an attempt
        raise AssertionError("tenacity gave up before any attempt")
    return retry_state.outcome.result()


def backoff_seconds(attempts: int, *, cap_seconds: int, jitter: float) -> float:
    """Backoff before the next try of an entry after `attempts` counted failures: exponential from 2 s,
    capped, with full jitter in [50 %, 100 %] so retried entries don't return in lockstep."""
    base = min(float(cap_seconds), 2.0 * 2.0 ** max(attempts - 1, 0))
    return base * (0.5 + 0.5 * jitter)

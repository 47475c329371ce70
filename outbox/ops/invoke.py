"""The stack's functions, run here the way Lambda runs them: looked up by the handler name the construct
deploys (`outbox.core.functions`) and called with an event and a context whose deadline is real.

`outbox relay --once`, `outbox serve` and `outbox demo` run the relay through this, so what runs locally is
the deployed entry point itself, and the `outbox` package names the relay only as data (ADR 0016). Like
Lambda, the function's own logs do not reach the caller's stdout: they go to stderr, at
`POWERTOOLS_LOG_LEVEL` (default ERROR here; the run's summary carries the reasons for a failed step), and
no EMF metrics are printed (`POWERTOOLS_METRICS_DISABLED`): the summary is the invocation's result.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from outbox.core.functions import EXAMPLE_CONSUMER_HANDLER, RELAY_HANDLER, RELAY_STOP_MARGIN_SECONDS

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

LOCAL_FUNCTION_ENVIRONMENT: Final = {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}
"""Defaults for a local invocation; a value already in the environment wins."""
RELAY_LOGGER: Final = "outbox-relay"
CONSUMER_LOGGER: Final = "outbox-example-consumer"
EXAMPLE_CONSUMER_SECONDS: Final = 30.0
"""The example consumer's timeout, as the construct deploys it."""

Handler = Callable[[Mapping[str, Any], Any], Any]


def local_context(remaining_seconds: float = 60.0) -> LambdaContext:
    """A Lambda context for running a handler in-process, with a real deadline."""
    return cast("LambdaContext", LocalContext(deadline=time.monotonic() + remaining_seconds))


@dataclass
class LocalContext:
    """The parts of a Lambda context that the handlers and Powertools read."""

    function_name: str = "outbox-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:outbox-local"
    aws_request_id: str = "local"
    deadline: float = 0.0
    """`time.monotonic()` at which the invocation would time out."""

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def use_local_function_environment() -> None:
    """`LOCAL_FUNCTION_ENVIRONMENT` for every function this process runs (a value already set wins): no EMF
    line may reach the stdout of `serve` or `demo`, which belongs to their own output."""
    for name, value in LOCAL_FUNCTION_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def handler_named(name: str) -> Handler:
    """The function `module.attribute` names, imported as Lambda's runtime would import it."""
    module, _, attribute = name.rpartition(".")
    return cast("Handler", getattr(importlib.import_module(module), attribute))


@dataclass(frozen=True, slots=True)
class RelayRun:
    """What one relay invocation reported (`RunSummary.as_dict()`), with the counts the tools act on."""

    reported: dict[str, Any]
    sent: int = 0
    rolled_back: int = 0
    poisoned: int = 0
    retries: int = 0
    relay_errors: int = 0
    finalize_failed: int = 0
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, reported: Mapping[str, Any]) -> RelayRun:
        counts = ("sent", "rolled_back", "poisoned", "retries", "relay_errors", "finalize_failed")
        return cls(
            dict(reported),
            **{name: int(reported.get(name, 0)) for name in counts},
            errors=tuple(str(error) for error in reported.get("errors", ())),
        )


def run_relay(seconds: float, event: Mapping[str, Any] | None = None) -> RelayRun:
    """One relay invocation with about `seconds` of work in it, and what it reported. `event`: what
    invoked it; none (the default) is the schedule's sweep, a stream batch rings its shards (ADR 0017)."""
    use_local_function_environment()
    handler = handler_named(RELAY_HANDLER)
    _logs_to_stderr(RELAY_LOGGER)
    return RelayRun.of(handler(dict(event or {}), local_context(seconds + RELAY_STOP_MARGIN_SECONDS)))


def run_example_consumer(event: Mapping[str, Any]) -> dict[str, Any]:
    """One invocation of the example consumer (ADR 0019) with an SQS event; its partial batch response."""
    use_local_function_environment()
    handler = handler_named(EXAMPLE_CONSUMER_HANDLER)
    _logs_to_stderr(CONSUMER_LOGGER)
    return dict(handler(dict(event), local_context(EXAMPLE_CONSUMER_SECONDS)))


def _logs_to_stderr(logger_name: str) -> None:
    """Point the function's log handlers at stderr: stdout belongs to the command that invoked it."""
    for log_handler in logging.getLogger(logger_name).handlers:
        if isinstance(log_handler, logging.StreamHandler) and log_handler.stream is not sys.stderr:
            if getattr(log_handler.stream, "closed", False):
                log_handler.stream = sys.stderr  # `setStream` would flush the closed one first, and fail
            else:
                log_handler.setStream(sys.stderr)

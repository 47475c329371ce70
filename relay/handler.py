"""Relay Lambda (`relay.handler.handler`): one scheduled run, a summary back, metrics out (EMF)."""

from __future__ import annotations

import functools
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.settings import Settings
from relay.clock import SystemClock
from relay.core import Relay
from relay.entries import RunSummary

SAFETY_MARGIN_SECONDS: Final = 5.0
"""Stop starting work this long before Lambda's timeout, so the last batch finishes inside it."""
METRICS_NAMESPACE: Final = "Outbox"
SERVICE: Final = "outbox-relay"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
_clock = SystemClock()


@functools.cache
def _relay() -> Relay:
    return Relay(dynamodb=dynamodb_client(), sqs=sqs_client(), settings=Settings.from_env(), clock=_clock)


def publish_metrics(sink: Metrics, summary: RunSummary) -> None:
    """The run's counts as CloudWatch metrics (EMF); the alarms in infra/ watch some of them."""
    for name, value in (
        ("MessagesSent", summary.sent),
        ("MessagesRolledBack", summary.rolled_back),
        ("MessagesPoisoned", summary.poisoned),
        ("SendRetries", summary.retries),
        ("DuplicatesPossible", summary.duplicates_possible),
        ("FifoResendsAfterWindow", summary.resent_after_window),
        ("FinalizeFailed", summary.finalize_failed),
        ("RelayErrors", summary.relay_errors),
    ):
        sink.add_metric(name=name, unit=MetricUnit.Count, value=value)
    sink.add_metric(
        name="OldestPendingAgeSeconds", unit=MetricUnit.Seconds, value=summary.oldest_pending_age_seconds
    )
    if summary.batches:
        average_ms = 1000 * summary.batch_seconds_total / summary.batches
        sink.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=average_ms)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    relay = _relay()
    deadline = _clock.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    summary = relay.run(deadline)
    publish_metrics(metrics, summary)
    logger.info("relay run finished", **summary.as_dict())
    return summary.as_dict()

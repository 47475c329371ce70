"""Relay Lambda (`relay.handler.handler`): a scheduled sweep of every shard, or the shards a doorbell rang
(a DynamoDB stream batch, relay/doorbell.py); a summary back, metrics out (EMF).

A manual invocation with `{"wait_for_busy_shards": true}` (what `outbox relay --once` sends) is a full
pass: a shard another relay holds is waited for, up to one lease, rather than skipped."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from outbox.core.clients import dynamodb_client, s3_client, sqs_client
from outbox.core.emf import flush
from outbox.core.functions import DOORBELL_RUN_SECONDS, RELAY_STOP_MARGIN_SECONDS, WAIT_FOR_BUSY_SHARDS
from outbox.core.settings import Settings
from outbox.core.usage import Usage, UsageMeter
from relay.clock import SystemClock
from relay.core import Relay
from relay.doorbell import shards_rung
from relay.entries import RunSummary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

SAFETY_MARGIN_SECONDS: Final = RELAY_STOP_MARGIN_SECONDS
"""Stop starting work this long before Lambda's timeout, so the last batch finishes inside it."""
METRICS_NAMESPACE: Final = "Outbox"
SERVICE: Final = "outbox-relay"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
"""X-Ray (ADR 0021): off outside Lambda; with active tracing, every AWS call of a run is a subsegment."""
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
_clock = SystemClock()
_usage = UsageMeter()
"""The capacity units and SQS requests of the relay's clients, taken once per invocation (issue #17)."""


def _relay() -> Relay:
    """The relay for this environment's clients and settings, built once per warm container (again only if
    they change: the local emulator points the clients at a new endpoint between runs)."""
    return _relay_for(dynamodb_client(), sqs_client(), Settings.from_env())


@functools.lru_cache(maxsize=1)
def _relay_for(dynamodb: DynamoDBClient, sqs: SQSClient, settings: Settings) -> Relay:
    _usage.attach(dynamodb)
    _usage.attach(sqs)
    return Relay(dynamodb=dynamodb, sqs=sqs, settings=settings, clock=_clock, s3=_usage.metered(s3_client))


def publish_metrics(sink: Metrics, summary: RunSummary, usage: Usage | None = None) -> None:
    """The run's counts as CloudWatch metrics (EMF); the alarms in infra/ watch some of them. `usage`: what
    the run's calls consumed (DynamoDB units as DynamoDB reported them, SQS requests as billed), which the
    dashboard prices per million messages; published, like the batch latency, by runs that did work."""
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
        # Only with work done: an idle stack pays for no metric it does not need (CloudWatch bills a custom
        # metric per hour it receives data), and its sweeps' empty reads are in the idle cost (ADR 0017).
        average_ms = 1000 * summary.batch_seconds_total / summary.batches
        sink.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=average_ms)
        usage = usage or Usage()
        sink.add_metric(name="DynamoDBWriteUnits", unit=MetricUnit.Count, value=usage.write_units)
        sink.add_metric(name="DynamoDBReadUnits", unit=MetricUnit.Count, value=usage.read_units)
        sink.add_metric(name="SQSRequests", unit=MetricUnit.Count, value=usage.sqs_requests)
        sink.add_metric(name="S3WriteRequests", unit=MetricUnit.Count, value=usage.s3_write_requests)
        sink.add_metric(name="S3ReadRequests", unit=MetricUnit.Count, value=usage.s3_read_requests)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    relay = _relay()
    _usage.take()  # what the clients did before this invocation is not its own
    deadline = _clock.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    try:
        shards = shards_rung(event)
        full_pass = shards is None and event.get(WAIT_FOR_BUSY_SHARDS) is True
        summary = relay_rung(relay, deadline, shards, wait_for_busy=full_pass)
        publish_metrics(metrics, summary, _usage.take())
    finally:
        flush(metrics)
    logger.info("relay run finished", **summary.as_dict())
    return summary.as_dict()


def relay_rung(
    relay: Relay, deadline: float, shards: frozenset[str] | None, *, wait_for_busy: bool = False
) -> RunSummary:
    """One sweep of every shard (`shards` None: the schedule), or the rung shards until a pass over them
    sends nothing more: entries written while a pass was reading are taken by the next pass rather than
    left for another invocation. A rung invocation works for `DOORBELL_RUN_SECONDS` at most. A pass that
    could not finish (deadline, an AWS error) ends the loop; what it left is the sweep's, or the next
    doorbell's. `wait_for_busy`: a sweep that waits for busy shards (`Relay.run`)."""
    if shards is not None:
        deadline = min(deadline, _clock.monotonic() + DOORBELL_RUN_SECONDS)
    summary = relay.run(deadline, shards, wait_for_busy=wait_for_busy)
    last = summary
    while shards and last.sent and last.drained and _clock.monotonic() < deadline:
        last = relay.run(deadline, shards)
        summary.merge(last)
    return summary

"""Prices, the AWS latency model and the cost floor. Every figure here is an assumption, written down with
its source in ADR 0012; change it here and the benchmark follows.

The doorbell's figures (ADR 0017, `python -m bench.latency_model`) are at the end, each a `Figure` that
carries its source and says whether AWS publishes it or it is an assumption of ours."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bench.units import CallRecord, read_units, sqs_requests, write_units

# On-demand list prices (us-east-1), kept in one place with their sources: the live cost metrics and the
# dashboard use the same (outbox/core/usage.py).
from outbox.core.usage import (
    PRICE_PER_READ_UNIT,
    PRICE_PER_S3_READ_REQUEST,
    PRICE_PER_S3_WRITE_REQUEST,
    PRICE_PER_SQS_REQUEST,
    PRICE_PER_WRITE_UNIT,
)


@dataclass(frozen=True, slots=True)
class Latency:
    """Typical in-region latency of one call: a base, plus a share per action/key/entry, plus transfer."""

    base_ms: float
    per_item_ms: float = 0.0


LATENCY: Final[dict[str, Latency]] = {
    # DynamoDB: "single-digit millisecond" for item reads and writes (product page, developer guide).
    "GetItem": Latency(5.0),
    "PutItem": Latency(6.0),
    "UpdateItem": Latency(6.0),
    "DeleteItem": Latency(6.0),
    "Query": Latency(6.0, 0.02),
    "BatchGetItem": Latency(8.0, 0.05),
    # Transactions do two phases (prepare, commit) across the items' partitions: ≈ 2-3x a single write.
    "TransactWriteItems": Latency(15.0, 0.1),
    # SQS: a send is acknowledged after the message is stored redundantly: "tens of milliseconds".
    "SendMessage": Latency(15.0),
    "SendMessageBatch": Latency(20.0, 0.2),
    # S3 Standard: tens of milliseconds to the first byte (S3 Express One Zone is sold as single-digit
    # milliseconds, "up to 10x faster" than Standard: S3 storage classes page). An assumption; the claim
    # check's object calls (ADR 0023), one per message.
    "PutObject": Latency(30.0),
    "HeadObject": Latency(20.0),
    "GetObject": Latency(20.0),
}
DEFAULT_LATENCY: Final = Latency(10.0)
TRANSFER_BYTES_PER_MS: Final = 50_000
"""≈ 50 MB/s on one connection from a Lambda in the same region (an assumption; matters only at 100 KB)."""


def call_ms(record: CallRecord) -> float:
    latency = LATENCY.get(record.operation, DEFAULT_LATENCY)
    return latency.base_ms + latency.per_item_ms * record.items + record.bytes_moved / TRANSFER_BYTES_PER_MS


def modeled_ms(records: Iterable[CallRecord]) -> float:
    """Σ over the calls of their typical latency: one worker doing these calls one after another."""
    return sum(call_ms(record) for record in records)


def dollars_per_million(
    write_units_per_message: float,
    read_units_per_message: float,
    sqs: float,
    s3_writes: float = 0.0,
    s3_reads: float = 0.0,
) -> float:
    """Request charges per million messages. Storage is not in it: see ADR 0023 for what a payload kept
    for its retention costs in the Payloads table and in S3."""
    return 1e6 * (
        write_units_per_message * PRICE_PER_WRITE_UNIT
        + read_units_per_message * PRICE_PER_READ_UNIT
        + sqs * PRICE_PER_SQS_REQUEST
        + s3_writes * PRICE_PER_S3_WRITE_REQUEST
        + s3_reads * PRICE_PER_S3_READ_REQUEST
    )


@dataclass(frozen=True, slots=True)
class Floor:
    """What DynamoDB and SQS make unavoidable in this layout: ingest one 2-item transaction (and the
    payload's `PutItem` when it is stored apart, or its `PutObject` when it goes to S3); relay a 2-item
    finalize (packed 50 to a 100-action transaction), a consistent BatchGetItem of 100 (and one of the
    payloads, or a `HeadObject` per S3 object), a SendMessageBatch of 10; no claims and no reads of the
    outbox."""

    ingest_calls: float
    ingest_write_units: float
    relay_calls: float
    relay_write_units: float
    relay_read_units: float
    relay_sqs_requests: float
    ingest_s3_write_requests: float = 0.0
    relay_s3_read_requests: float = 0.0


def floor(
    *,
    message_bytes: int,
    queued_message_bytes: int,
    entry_bytes: int,
    sqs_bytes: int,
    payload_item_bytes: int = 0,
    s3_object: bool = False,
) -> Floor:
    """`payload_item_bytes`: the payload's own item when it is stored apart (ADR 0023): one plain `PutItem`
    at ingest and one more consistent read (in a `BatchGetItem` of 100) at the relay. `s3_object`: the
    payload is an S3 object instead: one `PutObject` at ingest, one `HeadObject` at the relay (the send
    carries a pointer, `sqs_bytes` its size)."""
    batch = 10
    apart = payload_item_bytes > 0
    return Floor(
        ingest_calls=2.0 if apart or s3_object else 1.0,
        ingest_write_units=(write_units(payload_item_bytes) if apart else 0)
        + 2.0 * (write_units(message_bytes) + write_units(entry_bytes)),
        relay_calls=1 / 10 + 1 / 100 + 1 / 50 + (1 / 100 if apart else 0) + (1.0 if s3_object else 0),
        relay_write_units=2.0
        * (write_units(max(message_bytes, queued_message_bytes)) + write_units(entry_bytes)),
        relay_read_units=read_units(message_bytes, consistent=True)
        + (read_units(payload_item_bytes, consistent=True) if apart else 0),
        relay_sqs_requests=sqs_requests(batch * sqs_bytes) / batch,
        ingest_s3_write_requests=1.0 if s3_object else 0.0,
        relay_s3_read_requests=1.0 if s3_object else 0.0,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# -- The doorbell (ADR 0017): stream delivery, Lambda and the idle stack ----------------------------
# Read by `bench/latency_model.py`, which prints every figure below with its source and basis.

LAMBDA_DYNAMODB_DOC: Final = "https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html"
STREAMS_DOC: Final = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html"
STREAMS_LAMBDA_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.Lambda.html"
)
STREAMS_COST_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CostOptimization_StreamsUsage.html"
)
DYNAMODB_PRICING: Final = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
LAMBDA_PRICING: Final = "https://aws.amazon.com/lambda/pricing/"
LAMBDA_FILTERING_DOC: Final = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html"
LAMBDA_COLD_START_DOC: Final = (
    "https://docs.aws.amazon.com/lambda/latest/operatorguide/execution-environments.html"
)
CLOUDWATCH_PRICING: Final = "https://aws.amazon.com/cloudwatch/pricing/"
EVENTBRIDGE_PRICING: Final = "https://aws.amazon.com/eventbridge/pricing/"
THIS_MODEL: Final = "bench/model.py LATENCY (ADR 0012)"


@dataclass(frozen=True, slots=True)
class Figure:
    """One number of the model: its value, where it comes from, and whether AWS publishes it."""

    value: float
    unit: str
    source: str
    """A URL, or the file the figure is computed or measured in."""
    basis: str
    """What the source says (quoted where AWS says it), or why we assume the value."""
    assumption: bool
    """True when no published figure exists and the value is ours: replace it with a measurement."""


STREAM_POLLS_PER_SECOND: Final = Figure(
    4.0,
    "polls/s per stream shard",
    LAMBDA_DYNAMODB_DOC,
    '"Lambda polls shards in your DynamoDB stream for records at a base rate of 4 times per second"; '
    '"By default, Lambda invokes your function as soon as records are available" (batching window 0)',
    assumption=False,
)
STREAM_RECORD_P50_MS: Final = Figure(
    100.0,
    "ms",
    STREAMS_DOC,
    'AWS publishes no number: "DynamoDB Streams writes stream records in near-real time"; '
    '"a new record immediately appears in that table\'s stream" (' + STREAMS_LAMBDA_DOC + ")",
    assumption=True,
)
STREAM_RECORD_P99_MS: Final = Figure(
    500.0,
    "ms",
    STREAMS_DOC,
    "as above: a deliberately pessimistic tail for an unpublished figure (the model's largest unknown)",
    assumption=True,
)
INVOKE_OVERHEAD_MS: Final = Figure(
    DEFAULT_LATENCY.base_ms,
    "ms",
    "assumption",
    "a warm synchronous Invoke, from the poller's (or EventBridge's) request to the handler running: "
    "in-region service hop, priced like any other call of bench/model.py (DEFAULT_LATENCY)",
    assumption=True,
)
CALL_P99_FACTOR: Final = Figure(
    3.0,
    "x typical",
    "assumption",
    "bench/model.py gives typical latencies, not percentiles, and DynamoDB and SQS publish no p99: "
    "a call's p99 is taken as 3x its typical figure",
    assumption=True,
)
HANDLER_OVERHEAD_MS: Final = Figure(
    10.0,
    "ms",
    "assumption",
    "a warm relay run's own time outside AWS calls (Powertools logger and EMF flush, the worker pool) at "
    "512 MB; used for billed duration only",
    assumption=True,
)
COLD_IMPORT_MS: Final = Figure(
    293.0,
    "ms",
    "bench/results/latest.md (ADR 0012, revision 2)",
    "`import relay.handler` in a fresh interpreter, least of 7, measured on the bench machine (not Lambda)",
    assumption=False,
)
COLD_PLATFORM_MS: Final = Figure(
    100.0,
    "ms",
    LAMBDA_COLD_START_DOC,
    '"The duration of a cold start varies from under 100 ms to over 1 second": Lambda\'s own share of a '
    "cold start is assumed at the low end, beside our measured import",
    assumption=True,
)
COLD_START_SHARE: Final = Figure(
    0.01,
    "of invocations (at most)",
    LAMBDA_COLD_START_DOC,
    '"cold starts typically occur in under 1% of invocations" (an analysis of production workloads); the '
    'execution environment is kept "for a non-deterministic period of time"',
    assumption=False,
)
LAMBDA_PRICE_PER_REQUEST: Final = Figure(
    0.20e-6, "$ per request", LAMBDA_PRICING, "$0.20 per 1M requests (beyond the free tier)", assumption=False
)
LAMBDA_PRICE_PER_GB_SECOND_ARM: Final = Figure(
    0.0000133334,
    "$ per GB-s",
    LAMBDA_PRICING,
    "Arm (the relay is arm64: outbox/cdk/bundling.py), us-east-1, first tier; duration billed rounded up to "
    "the nearest 1 ms",
    assumption=False,
)
HOURS_PER_MONTH: Final = Figure(
    730.0, "h", LAMBDA_PRICING, "AWS's pricing examples' month (24 x 365 / 12)", assumption=False
)
STREAM_READS_BY_LAMBDA_PRICE: Final = Figure(
    0.0,
    "$",
    DYNAMODB_PRICING,
    '"You are not charged for GetRecords API calls invoked by AWS Lambda as part of DynamoDB triggers"; '
    '"DynamoDB Streams are not charged for being idle" (' + STREAMS_COST_DOC + ")",
    assumption=False,
)
FILTERED_RECORD_INVOCATIONS: Final = Figure(
    0.0,
    "invocations",
    LAMBDA_FILTERING_DOC,
    '"If none of your filters are satisfied, Lambda discards the record"; an empty poll has no records to '
    "invoke with (" + LAMBDA_DYNAMODB_DOC + ")",
    assumption=False,
)
SCHEDULE_EVENT_PRICE: Final = Figure(
    0.0,
    "$",
    EVENTBRIDGE_PRICING,
    "a scheduled rule's events come from AWS (source aws.events) on the default bus: AWS service events "
    "are not billed, only custom events are",
    assumption=False,
)
CLOUDWATCH_ALARM_MONTH: Final = Figure(
    0.10, "$ per alarm-month", CLOUDWATCH_PRICING, "standard-resolution alarm metric", assumption=False
)
CLOUDWATCH_METRIC_MONTH: Final = Figure(
    0.30, "$ per metric-month", CLOUDWATCH_PRICING, "custom metrics (EMF), first 10,000", assumption=False
)
CLOUDWATCH_LOG_GB: Final = Figure(
    0.50, "$ per GB ingested", CLOUDWATCH_PRICING, "Logs, standard class", assumption=False
)
LOG_BYTES_PER_RUN: Final = Figure(
    2048.0,
    "bytes",
    "assumption",
    "Lambda's START/END/REPORT lines, the relay's summary line and its EMF document, per run",
    assumption=True,
)

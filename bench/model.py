"""Prices, the AWS latency model and the cost floor. Every figure here is an assumption, written down with
its source in ADR 0012; change it here and the benchmark follows."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bench.units import CallRecord, read_units, sqs_requests, write_units

# On-demand list prices (us-east-1): https://aws.amazon.com/dynamodb/pricing/on-demand/ and
# https://aws.amazon.com/sqs/pricing/ (standard queue, beyond the free tier).
PRICE_PER_WRITE_UNIT: Final = 0.625e-6
PRICE_PER_READ_UNIT: Final = 0.125e-6
PRICE_PER_SQS_REQUEST: Final = 0.40e-6


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


def dollars_per_million(write_units_per_message: float, read_units_per_message: float, sqs: float) -> float:
    return 1e6 * (
        write_units_per_message * PRICE_PER_WRITE_UNIT
        + read_units_per_message * PRICE_PER_READ_UNIT
        + sqs * PRICE_PER_SQS_REQUEST
    )


@dataclass(frozen=True, slots=True)
class Floor:
    """What DynamoDB and SQS make unavoidable: ingest one 2-item transaction; relay a 2-item finalize
    (packed 50 to a 100-action transaction), a consistent BatchGetItem of 100, a SendMessageBatch of 10;
    no claims and no reads of the outbox."""

    ingest_calls: float
    ingest_write_units: float
    relay_calls: float
    relay_write_units: float
    relay_read_units: float
    relay_sqs_requests: float


def floor(*, message_bytes: int, queued_message_bytes: int, entry_bytes: int, sqs_bytes: int) -> Floor:
    batch = 10
    return Floor(
        ingest_calls=1.0,
        ingest_write_units=2.0 * (write_units(message_bytes) + write_units(entry_bytes)),
        relay_calls=1 / 10 + 1 / 100 + 1 / 50,
        relay_write_units=2.0
        * (write_units(max(message_bytes, queued_message_bytes)) + write_units(entry_bytes)),
        relay_read_units=read_units(message_bytes, consistent=True),
        relay_sqs_requests=sqs_requests(batch * sqs_bytes) / batch,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]

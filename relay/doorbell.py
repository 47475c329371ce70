"""Which shards an invocation is for: a DynamoDB stream batch names them, anything else is a sweep.

The stream of the Outbox table is a doorbell (issue #14, ADR 0017): a record says only "an entry was
written to shard N". The relay then works those shards as it always does (lease, query, send, finalize),
so a record lost, late, repeated or out of order costs latency at most; the scheduled sweep catches what
no doorbell rang for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from outbox.core.schema import OUTBOX_PARTITION_KEY
from relay.leases import is_lease_partition

STREAM_EVENT_SOURCE = "aws:dynamodb"


def shards_rung(event: Mapping[str, Any]) -> frozenset[str] | None:
    """The shards a stream batch wrote new entries to, or None when `event` is not a stream batch (the
    schedule's event, or a manual invocation): then every shard is swept.

    Only INSERTs ring: the relay's own writes (finalize deletes, rollbacks) would otherwise wake it for
    entries it has just handled. The event source mapping filters them out before they cost an
    invocation; this is the same rule for a mapping without the filter."""
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        return None
    shards: set[str] = set()
    for record in DynamoDBStreamEvent(dict(event)).records:
        if record.event_source != STREAM_EVENT_SOURCE:
            return None
        if record.event_name is not DynamoDBRecordEventName.INSERT or record.dynamodb is None:
            continue
        shard = (record.dynamodb.keys or {}).get(OUTBOX_PARTITION_KEY)
        if isinstance(shard, str) and not is_lease_partition(shard):  # a shard lease's first write (ADR 0018)
            shards.add(shard)
    return frozenset(shards)

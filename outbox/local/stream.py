"""A local stand-in for Lambda's DynamoDB stream poller: the doorbell of `outbox serve` and of the rehearsal.

On AWS an event source mapping reads the Outbox table's stream and invokes the relay with batches of
records (ADR 0017). moto can hold a mapping, but it then runs the function in Docker on every write to the
table; so locally nothing is mapped, and this reads the emulator's stream (`dynamodbstreams`) and shapes
each batch as the Lambda event the mapping would send: the mapping's filter applied, the record's creation
time as epoch seconds, `eventSourceARN` added. The relay's handler cannot tell the difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

INSERTS_ONLY: Final = {"eventName": ["INSERT"]}
"""The doorbell's filter pattern, as the stack's mapping has it (outbox/cdk/construct.py)."""
MAX_BATCH: Final = 1000
"""The mapping's batch size."""


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether `record` passes an event filter `pattern`, for the patterns the stack uses: every key of
    the pattern names a field of the record, whose value must be one of the listed values (nested
    patterns for nested fields). Lambda's full filter grammar (prefix, numeric, exists...) is not needed
    here and is refused rather than misread."""
    for key, expected in pattern.items():
        value = record.get(key)
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping) or not matches(expected, value):
                return False
        elif isinstance(expected, list) and all(isinstance(item, str | int | float) for item in expected):
            if value not in expected:
                return False
        else:
            raise ValueError(f"filter pattern for {key!r} is beyond this stand-in: {expected!r}")
    return True


def pattern_of(filter_criteria: Mapping[str, Any]) -> dict[str, Any]:
    """The one pattern of a template's `FilterCriteria` (`{"Filters": [{"Pattern": "<json>"}]}`)."""
    filters = filter_criteria.get("Filters", [])
    if len(filters) != 1:
        raise ValueError(f"expected one filter, got {len(filters)}")
    pattern: dict[str, Any] = json.loads(filters[0]["Pattern"])
    return pattern


@dataclass
class StreamTail:
    """Follows every shard of one DynamoDB stream from where it was when first polled (`LATEST`, as the
    mapping starts), and turns what was written since into Lambda events."""

    streams: Any
    """A boto3 `dynamodbstreams` client (no type stubs for it in the lock: the four calls are plain)."""
    stream_arn: str
    pattern: Mapping[str, Any] = field(default_factory=lambda: dict(INSERTS_ONLY))
    batch_size: int = MAX_BATCH
    _iterators: dict[str, str] = field(default_factory=dict)
    _closed: set[str] = field(default_factory=set)
    _started: bool = False

    def start(self) -> StreamTail:
        """Take the current end of every shard: only records written after this are delivered."""
        self._discover(start_at="LATEST")
        self._started = True
        return self

    def poll(self) -> list[dict[str, Any]]:
        """The Lambda events for everything written since the last poll (none when nothing passed the
        filter), in stream order, at most `batch_size` records each."""
        if not self._started:
            self.start()
        self._discover(start_at="TRIM_HORIZON")  # a shard that appeared since: read it whole
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._iterators.items()):
            response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records += [self._lambda_record(record) for record in response["Records"]]
            following = response.get("NextShardIterator")
            if following:
                self._iterators[shard_id] = following
            else:  # a closed shard, read to its end
                del self._iterators[shard_id]
                self._closed.add(shard_id)
        passed = [record for record in records if matches(self.pattern, record)]
        return [
            {"Records": passed[start : start + self.batch_size]}
            for start in range(0, len(passed), self.batch_size)
        ]

    def _discover(self, *, start_at: str) -> None:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._iterators or shard_id in self._closed:
                continue
            self._iterators[shard_id] = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=start_at
            )["ShardIterator"]

    def _lambda_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A `GetRecords` record as it appears in the Lambda event: epoch seconds for the creation time,
        the stream's ARN as `eventSourceARN`."""
        dynamodb = dict(record.get("dynamodb", {}))
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}

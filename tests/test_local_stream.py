"""The local doorbell (outbox/local/stream.py): the emulator's Outbox stream read as Lambda's poller reads
it, shaped as the event source mapping's batches, and rung into the real relay handler."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from outbox.core.schema import OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY, outbox_table_definition
from outbox.local.emulator import EmbeddedAws
from outbox.local.stream import INSERTS_ONLY, StreamTail, matches, pattern_of
from relay.doorbell import shards_rung

pytestmark = pytest.mark.server


def _clients(server: EmbeddedAws) -> tuple[Any, Any]:
    options = {
        "endpoint_url": server.endpoint_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("dynamodb", **options), boto3.client("dynamodbstreams", **options)


def _table(dynamodb: Any) -> tuple[str, str]:
    name = f"stream-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(**outbox_table_definition(name))
    return name, dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


def _key(shard: str, entry: str) -> dict[str, Any]:
    return {OUTBOX_PARTITION_KEY: {"S": shard}, OUTBOX_SORT_KEY: {"S": entry}}


def test_only_what_is_written_after_start_and_only_inserts(moto_server: EmbeddedAws) -> None:
    dynamodb, streams = _clients(moto_server)
    table, stream_arn = _table(dynamodb)
    dynamodb.put_item(TableName=table, Item=_key("0", "before"))
    tail = StreamTail(streams, stream_arn).start()
    dynamodb.put_item(TableName=table, Item=_key("1", "a"))
    dynamodb.update_item(
        TableName=table,
        Key=_key("1", "a"),
        UpdateExpression="SET claimed = :c",
        ExpressionAttributeValues={":c": {"S": "x"}},
    )
    dynamodb.delete_item(TableName=table, Key=_key("1", "a"))
    dynamodb.put_item(TableName=table, Item=_key("2", "b"))

    (event,) = tail.poll()
    assert [record["eventName"] for record in event["Records"]] == ["INSERT", "INSERT"]
    assert shards_rung(event) == {"1", "2"}
    for record in event["Records"]:
        assert record["eventSourceARN"] == stream_arn
        assert record["eventSource"] == "aws:dynamodb"
        assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
        assert record["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    assert tail.poll() == []  # nothing new: no event, as the mapping invokes nothing


def test_a_poll_reads_at_most_a_batch_and_the_next_goes_on(moto_server: EmbeddedAws) -> None:
    dynamodb, streams = _clients(moto_server)
    table, stream_arn = _table(dynamodb)
    tail = StreamTail(streams, stream_arn, batch_size=2).start()
    for entry in range(5):
        dynamodb.put_item(TableName=table, Item=_key(str(entry), f"e{entry}"))
    batches = [event["Records"] for _ in range(4) for event in tail.poll()]
    assert [len(records) for records in batches] == [2, 2, 1]
    keys = [record["dynamodb"]["Keys"][OUTBOX_SORT_KEY]["S"] for records in batches for record in records]
    assert keys == [f"e{entry}" for entry in range(5)]  # in stream order, none skipped


def test_filter_patterns() -> None:
    assert matches(INSERTS_ONLY, {"eventName": "INSERT"})
    assert not matches(INSERTS_ONLY, {"eventName": "REMOVE"})
    assert not matches(INSERTS_ONLY, {})
    nested = {"dynamodb": {"Keys": {"shard": {"S": ["3"]}}}}
    assert matches(nested, {"dynamodb": {"Keys": {"shard": {"S": "3"}}}})
    assert not matches(nested, {"dynamodb": {"Keys": {"shard": {"S": "4"}}}})
    with pytest.raises(ValueError, match="beyond this stand-in"):
        matches({"eventName": [{"prefix": "IN"}]}, {"eventName": "INSERT"})
    assert pattern_of({"Filters": [{"Pattern": '{"eventName":["INSERT"]}'}]}) == INSERTS_ONLY
    with pytest.raises(ValueError, match="one filter"):
        pattern_of({"Filters": []})

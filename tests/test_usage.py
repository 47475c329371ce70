"""Live cost (issue #17, outbox/core/usage.py): the meter asks DynamoDB for its consumed capacity and adds up
what the responses report; SQS sends are billed per started 64 KiB. moto reports a constant capacity, so the
arithmetic is tested on realistic responses injected at the botocore layer, and the relay's metrics on moto
for their names and dimensions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from outbox.core.clients import dynamodb_client, s3_client, sqs_client
from outbox.core.usage import (
    PRICE_PER_READ_UNIT,
    PRICE_PER_S3_READ_REQUEST,
    PRICE_PER_S3_WRITE_REQUEST,
    PRICE_PER_SQS_REQUEST,
    PRICE_PER_WRITE_UNIT,
    Usage,
    UsageMeter,
    billed_sqs_requests,
    capacity_units,
)
from outbox.ops.invoke import run_relay
from tests.conftest import Outbox, call_ingest, ingest_messages

# What DynamoDB answers with ReturnConsumedCapacity=TOTAL on an on-demand table (shapes from the API
# reference: a mapping for single-item operations and Query, one mapping per table for batches and
# transactions; CapacityUnits always, the Read/Write split when the operation has one).
TRANSACT_FINALIZE = {
    "ConsumedCapacity": [
        {
            "TableName": "outbox",
            "CapacityUnits": 2.0,
            "WriteCapacityUnits": 2.0,
        },  # the lease's check, 2 deletes
        {"TableName": "messages", "CapacityUnits": 8.0, "WriteCapacityUnits": 8.0},  # 2 updates of 2 KB items
    ]
}
BATCH_GET = {
    "Responses": {},
    "ConsumedCapacity": [
        {"TableName": "messages", "CapacityUnits": 2.0, "ReadCapacityUnits": 2.0},
        {"TableName": "payloads", "CapacityUnits": 25.5},  # no split: a read operation's units are reads
    ],
}
QUERY = {
    "Items": [],
    "Count": 0,
    "ScannedCount": 0,
    "ConsumedCapacity": {"TableName": "outbox", "CapacityUnits": 0.5},
}
UPDATE = {"ConsumedCapacity": {"TableName": "outbox", "CapacityUnits": 1.0}}


def _answer(client: Any, operation: str, parsed: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer `operation` with `parsed` instead of sending it; returns the params each call was sent with."""
    sent: list[dict[str, Any]] = []

    def reply(params: dict[str, Any], model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        sent.append(json.loads(params["body"]))
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), parsed

    client.meta.events.register(f"before-call.dynamodb.{operation}", reply)
    return sent


def test_the_meter_asks_for_capacity_and_adds_up_realistic_responses(outbox: Outbox) -> None:
    client = dynamodb_client()
    meter = UsageMeter()
    meter.attach(client)
    meter.attach(client)  # twice: counted once
    sent = {
        "TransactWriteItems": _answer(client, "TransactWriteItems", TRANSACT_FINALIZE),
        "BatchGetItem": _answer(client, "BatchGetItem", BATCH_GET),
        "Query": _answer(client, "Query", QUERY),
        "UpdateItem": _answer(client, "UpdateItem", UPDATE),
    }
    key = {"shard": {"S": "0"}, "entry_id": {"S": "x"}}
    client.transact_write_items(TransactItems=[{"Delete": {"TableName": "outbox", "Key": key}}])
    client.batch_get_item(RequestItems={"messages": {"Keys": [{"message_id": {"S": "m"}}]}})
    client.query(
        TableName="outbox",
        KeyConditionExpression="shard = :s",
        ExpressionAttributeValues={":s": {"S": "0"}},
    )
    client.update_item(
        TableName="outbox",
        Key=key,
        UpdateExpression="SET a = :a",
        ExpressionAttributeValues={":a": {"S": "b"}},
    )
    client.describe_table(TableName=outbox.resources.messages_table)  # no capacity to ask for

    assert all(call["ReturnConsumedCapacity"] == "TOTAL" for calls in sent.values() for call in calls)
    usage = meter.take()
    assert usage == Usage(write_units=11.0, read_units=28.0, sqs_requests=0, dynamodb_calls=5, sqs_calls=0)
    assert usage.dollars == pytest.approx(11 * PRICE_PER_WRITE_UNIT + 28 * PRICE_PER_READ_UNIT)
    assert meter.take() == Usage()  # taken: the next invocation starts from zero


def test_capacity_units_of_each_response_shape() -> None:
    assert capacity_units("PutItem", {"TableName": "t", "CapacityUnits": 2.0}) == (2.0, 0.0)
    assert capacity_units("GetItem", {"TableName": "t", "CapacityUnits": 0.5}) == (0.0, 0.5)
    assert capacity_units("TransactWriteItems", TRANSACT_FINALIZE["ConsumedCapacity"]) == (10.0, 0.0)
    assert capacity_units("BatchGetItem", BATCH_GET["ConsumedCapacity"]) == (0.0, 27.5)
    assert capacity_units("PutItem", None) == (0.0, 0.0)  # an answer without it (an emulator, an error)


def test_sqs_sends_are_billed_per_started_64_kib() -> None:
    small = {
        "MessageBody": "x" * 1000,
        "MessageAttributes": {"message_id": {"DataType": "String", "StringValue": "m" * 36}},
    }
    big = {"MessageBody": "x" * 10_000}
    assert billed_sqs_requests("SendMessageBatch", {"Entries": [small] * 10}) == 1
    assert billed_sqs_requests("SendMessageBatch", {"Entries": [big] * 10}) == 2  # 100,000 bytes
    assert billed_sqs_requests("SendMessage", {"MessageBody": "x" * 65_537}) == 2


def test_sqs_calls_are_counted_as_billed(outbox: Outbox) -> None:
    client = sqs_client()
    meter = UsageMeter()
    meter.attach(client)
    entries = [{"Id": str(n), "MessageBody": "x" * 20_000} for n in range(4)]  # 80,000 bytes: 2 requests
    client.send_message_batch(QueueUrl=outbox.resources.queue_url, Entries=entries)
    client.receive_message(QueueUrl=outbox.resources.queue_url, MaxNumberOfMessages=1)
    usage = meter.take()
    assert (usage.sqs_requests, usage.sqs_calls) == (3, 2)
    assert usage.per_million(4) == pytest.approx(3 * PRICE_PER_SQS_REQUEST / 4 * 1_000_000)


def test_the_relay_publishes_its_usage_with_the_relays_dimensions(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On moto (its capacity is a constant, but it is reported): the EMF line carries the three usage metrics
    in namespace Outbox, dimension service=outbox-relay, next to MessagesSent."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    ingest_messages(outbox, 3)

    summary = run_relay(20)

    assert summary.sent == 3
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (emf,) = lines
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Outbox"
    assert directive["Dimensions"] == [["service"]]
    assert emf["service"] == "outbox-relay"
    names = {metric["Name"] for metric in directive["Metrics"]}
    assert {"DynamoDBWriteUnits", "DynamoDBReadUnits", "SQSRequests", "MessagesSent"} <= names
    assert emf["MessagesSent"] == [3.0]  # Powertools writes each value as a list
    assert emf["SQSRequests"][0] >= 1  # one send per shard the three messages landed in
    assert emf["DynamoDBWriteUnits"][0] > 0


def test_ingest_publishes_each_requests_usage_and_whether_it_accepted_a_message(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    headers = {"Idempotency-Key": "usage-1"}
    assert call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers)[0] == 202
    assert call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers)[0] == 200  # a replay

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    first, replay = lines
    for emf in lines:
        (directive,) = emf["_aws"]["CloudWatchMetrics"]
        assert (directive["Namespace"], directive["Dimensions"]) == ("Outbox", [["service"]])
        assert emf["service"] == "outbox-ingest"
    assert (first["MessagesAccepted"], replay["MessagesAccepted"]) == ([1.0], [0.0])
    # moto reports no capacity for a transaction (the arithmetic is tested on AWS's shapes above): here the
    # metrics are only there, with their names and dimension.
    assert {"DynamoDBWriteUnits", "DynamoDBReadUnits"} <= first.keys() & replay.keys()


def test_s3_calls_are_counted_by_the_class_s3_bills_them_in(s3_outbox: Outbox) -> None:
    """The claim check's calls (ADR 0023): a PUT at the PUT price; HEAD and GET, found or not, at the GET
    price. `metered` attaches a client made only when needed, once however often it is asked for."""
    meter = UsageMeter()
    make = meter.metered(s3_client)
    bucket = s3_outbox.settings.payloads_bucket
    make().put_object(Bucket=bucket, Key="payloads/usage", Body=b"{}")
    make().head_object(Bucket=bucket, Key="payloads/usage")
    make().get_object(Bucket=bucket, Key="payloads/usage")
    with pytest.raises(make().exceptions.ClientError):
        make().head_object(Bucket=bucket, Key="payloads/missing")
    usage = meter.take()
    assert (usage.s3_write_requests, usage.s3_read_requests) == (1, 3)
    assert usage.dollars == pytest.approx(PRICE_PER_S3_WRITE_REQUEST + 3 * PRICE_PER_S3_READ_REQUEST)
    assert meter.take() == Usage()


def test_ingest_and_the_relay_publish_their_s3_requests(
    s3_outbox: Outbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A payload above an item's limit: ingest's PutObject and the relay's HeadObject reach the metrics the
    dashboard prices."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    status, body, _ = call_ingest("POST", "/messages", {"payload": {"blob": "x" * 400_000}})
    assert status == 202, body

    assert run_relay(20).sent == 1

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    by_service = {emf["service"]: emf for emf in lines}
    assert by_service["outbox-ingest"]["S3WriteRequests"] == [1.0]
    assert by_service["outbox-ingest"]["S3ReadRequests"] == [0.0]
    assert by_service["outbox-relay"]["S3ReadRequests"] == [1.0]  # the HEAD before the pointer is sent
    assert by_service["outbox-relay"]["S3WriteRequests"] == [0.0]

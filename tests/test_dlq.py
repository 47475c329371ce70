"""`outbox dlq` (outbox/ops/dlq.py, ADR 0020) on moto: messages a consumer gave up on are found in the
dead-letter queue, marked DEAD_LETTERED, and sent again through the outbox with their lineage kept. Every
test reads the tables and the queues back directly; each guard's scenario fails without it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from outbox.consumer import ConsumedMessage, OutboxConsumer
from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import iso, utc_now
from outbox.local.consumer import lambda_sqs_event
from outbox.local.queue import drain_queue, message_id_of
from outbox.ops import dlq
from tests.conftest import Outbox, ingest_messages, make_relay, receive_all, run_outbox, run_relay
from tests.test_guards import operator_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


def _gave_up_on(outbox: Outbox, count: int) -> list[str]:
    """`count` messages relayed, failed by their consumer, and moved to the DLQ as SQS's redrive policy
    would after `maxReceiveCount` receives (moto's own move is timing-dependent: done by hand)."""
    ids = ingest_messages(outbox, count, group=(lambda n: f"g{n}") if outbox.settings.fifo else None)
    run_relay(make_relay(outbox))
    consumer = OutboxConsumer(dynamodb_client(), messages_table=outbox.settings.messages_table)
    received = receive_all(outbox.settings.queue_url)
    for record in lambda_sqs_event(received, "arn", "us-east-1")["Records"]:
        with pytest.raises(RuntimeError):
            consumer.consume(SQSRecord(record), _failing)
    for message in received:
        fifo: dict[str, Any] = (
            {
                "MessageGroupId": message["Attributes"]["MessageGroupId"],
                "MessageDeduplicationId": message_id_of(message),
            }
            if outbox.settings.fifo
            else {}
        )
        sqs_client().send_message(
            QueueUrl=outbox.resources.dlq_url,
            MessageBody=message["Body"],
            MessageAttributes={
                name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                for name, value in message["MessageAttributes"].items()
            },
            **fifo,
        )
    return ids


def _failing(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
    raise RuntimeError("the downstream service is down")


def _dead_letters(outbox: Outbox, client: DynamoDBClient | None = None) -> list[dlq.DeadLetter]:
    return dlq.dead_letters(
        sqs=sqs_client(),
        dynamodb=client or dynamodb_client(),
        settings=outbox.settings,
        dlq_url=outbox.resources.dlq_url,
        limit=100,
    )


def _redrive(
    outbox: Outbox, ids: set[str] | None, client: DynamoDBClient | None = None, **kwargs: Any
) -> list[dlq.Redriven]:
    return dlq.redrive(
        ids,
        sqs=sqs_client(),
        dynamodb=client or dynamodb_client(),
        settings=outbox.settings,
        dlq_url=outbox.resources.dlq_url,
        actor="ops",
        **kwargs,
    )


def _dlq_left(outbox: Outbox) -> list[str]:
    """The message ids still in the DLQ (read and deleted)."""
    return sorted(message_id_of(m) for m in drain_queue(sqs_client(), outbox.resources.dlq_url))


def test_listing_marks_what_a_consumer_gave_up_on_dead_lettered(outbox: Outbox) -> None:
    ids = _gave_up_on(outbox, 2)
    letters = _dead_letters(outbox)
    assert sorted(letter.message_id or "" for letter in letters) == sorted(ids)
    assert {letter.status for letter in letters} == {"DEAD_LETTERED"}
    assert {letter.last_error for letter in letters} == {"RuntimeError: the downstream service is down"}
    for message_id in ids:
        stored = outbox.message(message_id)
        assert stored is not None
        assert stored["status"]["S"] == "DEAD_LETTERED"
        assert "dead_lettered_at" in stored
        assert "expires_at" not in stored  # still owed: it waits for an operator


def test_a_redrive_sends_the_message_again_through_the_outbox_with_its_lineage(outbox: Outbox) -> None:
    (message_id, other) = _gave_up_on(outbox, 2)
    results = _redrive(outbox, {message_id})
    assert [(r.message_id, r.outcome, r.redrive_count) for r in results] == [(message_id, "redriven", 1)]
    stored = outbox.message(message_id)
    assert stored is not None
    assert (stored["status"]["S"], stored["redrive_count"]["N"], stored["redriven_by"]["S"]) == (
        "PENDING",
        "1",
        "ops",
    )
    assert len(stored["redriven_at"]["L"]) == 1
    entries = [entry for entry in outbox.entries() if entry["message_id"]["S"] == message_id]
    assert [entry["entry_id"]["S"] for entry in entries] == [stored["entry_id"]["S"]]
    assert _dlq_left(outbox) == [other]  # the redriven copy is gone, the other stays

    assert run_relay(make_relay(outbox)).sent == 1
    (again,) = receive_all(outbox.settings.queue_url)
    assert message_id_of(again) == message_id
    consumer = OutboxConsumer(dynamodb_client(), messages_table=outbox.settings.messages_table)
    record = lambda_sqs_event([again], "arn", "us-east-1")["Records"][0]
    consumer.consume(SQSRecord(record), lambda message: None)
    stored = outbox.message(message_id)
    assert stored is not None
    assert (stored["status"]["S"], stored["redrive_count"]["N"]) == ("COMPLETED", "1")


def test_a_completed_messages_copy_is_only_deleted_and_a_failed_one_is_left_alone(outbox: Outbox) -> None:
    completed, failed = _gave_up_on(outbox, 2)
    table = outbox.settings.messages_table
    for message_id, status in ((completed, "COMPLETED"), (failed, "FAILED")):
        dynamodb_client().update_item(
            TableName=table,
            Key={"message_id": {"S": message_id}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
    entries_before = outbox.entries()
    outcomes = {r.message_id: (r.outcome, r.reason) for r in _redrive(outbox, None)}
    assert outcomes == {
        completed: ("already_completed", ""),
        failed: ("left_alone", "it is FAILED: requeue it with `outbox requeue`"),
    }
    assert outbox.entries() == entries_before
    assert _dlq_left(outbox) == [failed]


def test_a_fifo_redrive_waits_out_the_deduplication_interval(fifo_outbox: Outbox) -> None:
    (message_id,) = _gave_up_on(fifo_outbox, 1)
    (early,) = _redrive(fifo_outbox, {message_id})
    assert early.outcome == "left_alone"
    assert "5-minute deduplication" in early.reason
    assert [e for e in fifo_outbox.entries() if e["message_id"]["S"] == message_id] == []
    six_minutes_ago = iso(utc_now() - timedelta(minutes=6))  # time passes (a future `now` would move the
    dynamodb_client().update_item(  # process's time-ordered ids ahead: they are monotonic)
        TableName=fifo_outbox.settings.messages_table,
        Key={"message_id": {"S": message_id}},
        UpdateExpression="SET queued_at = :then",
        ExpressionAttributeValues={":then": {"S": six_minutes_ago}},
    )
    (later,) = _redrive(fifo_outbox, {message_id})
    assert later.outcome == "redriven"


def test_a_redrive_of_a_message_that_moved_on_meanwhile_writes_nothing(outbox: Outbox) -> None:
    (message_id,) = _gave_up_on(outbox, 1)
    _dead_letters(outbox)  # marked DEAD_LETTERED

    def completed_meanwhile() -> None:  # SQS's own redrive and a consumer finished it
        dynamodb_client().update_item(
            TableName=outbox.settings.messages_table,
            Key={"message_id": {"S": message_id}},
            UpdateExpression="SET #s = :done",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":done": {"S": "COMPLETED"}},
        )

    (result,) = _redrive(outbox, {message_id}, client=operator_client(completed_meanwhile))
    assert (result.outcome, result.reason) == ("left_alone", "it changed while this ran; look again")
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "COMPLETED"
    assert "redrive_count" not in stored
    assert [e for e in outbox.entries() if e["message_id"]["S"] == message_id] == []


def test_listing_never_marks_a_message_completed_meanwhile(outbox: Outbox) -> None:
    (message_id,) = _gave_up_on(outbox, 1)

    def completed_meanwhile() -> None:
        dynamodb_client().update_item(
            TableName=outbox.settings.messages_table,
            Key={"message_id": {"S": message_id}},
            UpdateExpression="SET #s = :done",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":done": {"S": "COMPLETED"}},
        )

    (letter,) = _dead_letters(outbox, operator_client(completed_meanwhile, before="UpdateItem"))
    assert letter.status == "COMPLETED"
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "COMPLETED"
    assert "dead_lettered_at" not in stored


def _gave_up_on_again(outbox: Outbox, message_id: str) -> None:
    sqs_client().send_message(
        QueueUrl=outbox.resources.dlq_url,
        MessageBody="{}",
        MessageAttributes={"message_id": {"DataType": "String", "StringValue": message_id}},
    )


@pytest.mark.server
def test_the_dlq_commands_as_an_operator_runs_them(server_outbox: Outbox) -> None:
    (message_id,) = _gave_up_on(server_outbox, 1)
    env = {**os.environ, "DLQ_URL": server_outbox.resources.dlq_url}
    listed = run_outbox("dlq", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["message_id"], row["status"]) == (message_id, "DEAD_LETTERED")
    # The listing left the copy visible again: redrive finds it at once.
    redriven = run_outbox("dlq", "redrive", message_id, env=env)
    assert redriven.returncode == 0, redriven.stderr
    assert redriven.stdout.splitlines() == [f"redriven {message_id}", "redriven 1 message(s)"]
    no_queue = run_outbox("dlq", "list", env={"DLQ_URL": ""})
    assert no_queue.returncode == 2
    assert no_queue.stderr.startswith("configuration error: no dead-letter queue: set DLQ_URL")
    assert "Traceback" not in no_queue.stderr

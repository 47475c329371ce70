"""The consumer helper (outbox/consumer, ADR 0019) on moto: messages relayed to SQS, received, and handed
to Powertools' batch utility through `OutboxConsumer.record_handler`. Every test reads the Messages table
and a side-effect table back directly; each guard's scenario fails without it (`./dev mutants`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from outbox.api import enqueue
from outbox.consumer import ClaimLost, Consumed, ConsumedMessage, NotClaimed, OutboxConsumer
from outbox.consumer.transitions import Claim, claim_update
from outbox.core.clients import dynamodb_client, sqs_client
from outbox.data.messages import read_message
from outbox.ingest.service import status_record
from outbox.local.consumer import QueuePoller, lambda_sqs_event
from tests.conftest import Outbox, ingest_messages, make_relay, receive_all, run_relay

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

EFFECTS = "consumer-effects"


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def effects(outbox: Outbox) -> str:
    """A table of the consumer's own, for its side effects."""
    dynamodb_client().create_table(
        TableName=EFFECTS,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    return EFFECTS


def _relayed(outbox: Outbox, count: int) -> tuple[list[str], list[dict[str, Any]]]:
    """`count` messages accepted, relayed, and the SQS event a consumer function would get for them."""
    ids = ingest_messages(outbox, count)
    run_relay(make_relay(outbox))
    return ids, [_record(message) for message in receive_all(outbox.settings.queue_url)]


def _record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to a function (the local stand-in's shape)."""
    (record,) = lambda_sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:queue", "us-east-1")[
        "Records"
    ]
    return record


def _process(consumer: OutboxConsumer, records: list[dict[str, Any]], work: Callable[..., Any]) -> set[str]:
    """One Lambda invocation through Powertools' batch utility: the SQS message ids it reports failed."""
    response = process_partial_response(
        event={"Records": records},
        record_handler=consumer.record_handler(work),
        processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
    )
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def _effect(message: ConsumedMessage) -> list[TransactWriteItemTypeDef]:
    """The consumer's own write, committed with COMPLETED: one item per message, counting its runs."""
    return [
        {
            "Update": {
                "TableName": EFFECTS,
                "Key": {"id": {"S": message.message_id}},
                "UpdateExpression": "ADD applied :one SET n = :n",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":n": {"N": str(message.payload["n"])}},
            }
        }
    ]


def _applied(message_id: str) -> int:
    item = dynamodb_client().get_item(TableName=EFFECTS, Key={"id": {"S": message_id}}, ConsistentRead=True)
    return int(item.get("Item", {}).get("applied", {}).get("N", "0"))


def message_status(table: str, message_id: str) -> dict[str, Any]:
    """The message as `GET /messages/{id}` and `outbox status` show it."""
    message = read_message(dynamodb_client(), table, message_id)
    assert message is not None
    return status_record(message)


def _consumer(outbox: Outbox, clock: Clock | None = None, processing_seconds: int = 60) -> OutboxConsumer:
    return OutboxConsumer(
        dynamodb_client(),
        messages_table=outbox.settings.messages_table,
        processing_seconds=processing_seconds,
        now=clock or Clock(),
    )


def test_consumed_messages_are_completed_with_their_side_effects_in_the_same_transaction(
    outbox: Outbox, effects: str
) -> None:
    ids, records = _relayed(outbox, 3)
    seen: list[ConsumedMessage] = []

    def work(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        seen.append(message)
        return _effect(message)

    assert _process(_consumer(outbox), records, work) == set()
    assert sorted(message.message_id for message in seen) == sorted(ids)
    assert {message.attributes["origin"] for message in seen} == {"test"}
    for message_id in ids:
        stored = outbox.message(message_id)
        assert stored is not None
        assert stored["status"]["S"] == "COMPLETED"
        assert "completed_at" in stored
        assert stored["receive_count"]["N"] == "1"
        assert "processing_token" not in stored
        assert _applied(message_id) == 1
    shown = message_status(outbox.settings.messages_table, ids[0])
    assert (shown["status"], shown["receive_count"]) == ("COMPLETED", 1)
    assert shown["completed_at"] is not None


def test_a_redelivered_completed_message_is_acknowledged_without_running_again(
    outbox: Outbox, effects: str
) -> None:
    ids, records = _relayed(outbox, 2)
    consumer = _consumer(outbox)
    runs: list[str] = []

    def work(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        runs.append(message.message_id)
        return _effect(message)

    assert _process(consumer, records, work) == set()
    assert _process(consumer, records, work) == set()  # SQS delivered the batch again
    assert sorted(runs) == sorted(ids)
    assert consumer.consume(SQSRecord(records[0]), work) is Consumed.DUPLICATE
    assert [_applied(message_id) for message_id in ids] == [1, 1]


def test_a_failing_function_puts_the_message_back_to_queued_with_its_error_and_commits_nothing(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)

    def work(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        raise RuntimeError("downstream said no")

    assert _process(_consumer(outbox), records, work) == {records[0]["messageId"]}
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "QUEUED"
    assert stored["last_error"]["S"] == "RuntimeError: downstream said no"
    assert stored["consumer_attempts"]["N"] == "1"
    assert "processing_token" not in stored
    assert _applied(message_id) == 0

    assert _process(_consumer(outbox), records, _effect) == set()  # the redelivery succeeds
    stored = outbox.message(message_id)
    assert stored is not None
    assert (stored["status"]["S"], stored["receive_count"]["N"]) == ("COMPLETED", "2")
    assert _applied(message_id) == 1


def test_a_message_another_consumer_is_working_on_is_retried_later_not_run_twice(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)
    clock = Clock()
    first, second = _consumer(outbox, clock, processing_seconds=30), _consumer(outbox, clock)
    runs: list[str] = []

    def slow(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        # While the first consumer works, SQS hands the same message to a second one.
        runs.append("first")
        assert _process(second, records, lambda m: runs.append("second")) == {records[0]["messageId"]}
        return _effect(message)

    assert _process(first, records, slow) == set()
    assert runs == ["first"]
    assert _applied(message_id) == 1


def test_a_claim_that_ran_out_is_taken_over_and_the_first_consumer_commits_nothing(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)
    clock = Clock()
    first, second = _consumer(outbox, clock, processing_seconds=30), _consumer(outbox, clock)

    def stalled(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        clock.advance(31)  # the first consumer stalls past its claim; SQS redelivers to the second
        assert _process(second, records, _effect) == set()
        return _effect(message)

    with pytest.raises(ClaimLost):
        first.consume(SQSRecord(records[0]), stalled)
    stored = outbox.message(message_id)
    assert stored is not None
    assert (stored["status"]["S"], stored["receive_count"]["N"]) == ("COMPLETED", "2")
    assert _applied(message_id) == 1


def _claimed_by_another(outbox: Outbox, message_id: str, clock: Clock) -> None:
    """A second consumer claims the message (its claim has run out for the first) and is still working."""
    until = clock() + timedelta(seconds=60)
    dynamodb_client().update_item(
        **claim_update(
            Claim(message_id, "second", int(until.timestamp() * 1000)),
            messages_table=outbox.settings.messages_table,
            now=clock(),
            retention=timedelta(days=1),
        )
    )


def test_a_stalled_consumer_cannot_complete_while_another_holds_the_message(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)
    clock = Clock()
    first = _consumer(outbox, clock, processing_seconds=30)

    def stalled(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        clock.advance(31)
        _claimed_by_another(outbox, message_id, clock)
        return _effect(message)

    with pytest.raises(ClaimLost):
        first.consume(SQSRecord(records[0]), stalled)
    stored = outbox.message(message_id)
    assert stored is not None
    assert (stored["status"]["S"], stored["processing_token"]["S"]) == ("PROCESSING", "second")
    assert _applied(message_id) == 0


def test_a_failure_after_the_claim_was_taken_over_leaves_the_new_holders_claim_alone(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)
    clock = Clock()
    first = _consumer(outbox, clock, processing_seconds=30)

    def stalled_then_fails(message: ConsumedMessage) -> None:
        clock.advance(31)  # past the first claim: a second consumer claims the message and works on it
        _claimed_by_another(outbox, message_id, clock)
        raise RuntimeError("first consumer gave up")

    with pytest.raises(RuntimeError):
        first.consume(SQSRecord(records[0]), stalled_then_fails)
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "PROCESSING"
    assert stored["processing_token"]["S"] == "second"
    assert "last_error" not in stored


def test_a_refused_side_effect_commits_nothing_and_the_message_waits_for_redelivery(
    outbox: Outbox, effects: str
) -> None:
    (message_id,), records = _relayed(outbox, 1)

    def refused(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
        return [
            {
                "Put": {
                    "TableName": EFFECTS,
                    "Item": {"id": {"S": message.message_id}},
                    "ConditionExpression": "attribute_exists(id)",  # the consumer's own rule says no
                }
            }
        ]

    assert _process(_consumer(outbox), records, refused) == {records[0]["messageId"]}
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "QUEUED"
    assert "TransactionCancelled" in stored["last_error"]["S"]
    assert _applied(message_id) == 0


def test_a_delivery_before_the_relay_marks_it_queued_is_processed_and_nothing_moves_back(
    outbox: Outbox, effects: str
) -> None:
    """SQS may deliver before the relay marks the message QUEUED (between its send and its finalize):
    PENDING → PROCESSING → COMPLETED. The relay then finds the message moved on and only deletes the entry
    (at finalize, or, as here, when it reads the message again); the status stays COMPLETED."""
    (message_id,) = ingest_messages(outbox, 1)
    early = _record(
        {
            "MessageId": "early-delivery",
            "ReceiptHandle": "rh",
            "Body": '{"n":0}',
            "MD5OfBody": "",
            "MessageAttributes": {"message_id": {"StringValue": message_id, "DataType": "String"}},
        }
    )
    consumer = _consumer(outbox)
    assert _process(consumer, [early], _effect) == set()
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "COMPLETED"
    assert "queued_at" in stored

    # The relay finds the message moved on: its entry goes, unsent.
    summary = run_relay(make_relay(outbox))
    assert (summary.sent, summary.stale) == (0, 1)
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "COMPLETED"
    assert outbox.entries() == []
    assert receive_all(outbox.settings.queue_url) == []
    assert consumer.consume(SQSRecord(early), _effect) is Consumed.DUPLICATE  # SQS's copy, delivered again
    assert _applied(message_id) == 1


def test_a_failed_or_unknown_message_is_not_claimed(outbox: Outbox, effects: str) -> None:
    (message_id,), records = _relayed(outbox, 1)
    table = outbox.settings.messages_table
    dynamodb_client().update_item(
        TableName=table,
        Key={"message_id": {"S": message_id}},
        UpdateExpression="SET #s = :failed",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":failed": {"S": "FAILED"}},
    )
    consumer = _consumer(outbox)
    with pytest.raises(NotClaimed, match="is FAILED"):
        consumer.consume(SQSRecord(records[0]), _effect)
    dynamodb_client().delete_item(TableName=table, Key={"message_id": {"S": message_id}})
    with pytest.raises(NotClaimed, match="no such message"):
        consumer.consume(SQSRecord(records[0]), _effect)
    assert _applied(message_id) == 0
    assert outbox.message(message_id) is None


def test_a_record_without_a_message_id_is_refused() -> None:
    consumer = OutboxConsumer(dynamodb_client(), messages_table="unused")
    record = SQSRecord({"messageId": "m-1", "body": "{}", "messageAttributes": {}, "attributes": {}})
    with pytest.raises(NotClaimed, match="has no message_id attribute"):
        consumer.consume(record, _effect)


def _readme_consumer_example() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Consuming") :]
    return section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]


def test_the_readme_consumer_example_runs_as_written(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    dynamodb_client().create_table(
        TableName="shipments",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
    )
    (message_id,) = [
        enqueue({"order_id": "o-7"}, settings=outbox.settings, attributes={"origin": "test"}).message_id
    ]
    run_relay(make_relay(outbox))
    records = [_record(message) for message in receive_all(outbox.settings.queue_url)]
    monkeypatch.setenv("MESSAGES_TABLE", outbox.settings.messages_table)
    namespace: dict[str, Any] = {}
    exec(compile(_readme_consumer_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README

    assert namespace["handler"]({"Records": records}, None) == {"batchItemFailures": []}
    stored = outbox.message(message_id)
    assert stored is not None
    assert stored["status"]["S"] == "COMPLETED"
    shipment = dynamodb_client().get_item(TableName="shipments", Key={"order_id": {"S": "o-7"}})
    assert "Item" in shipment


def test_the_local_sqs_mapping_deletes_what_the_consumer_did_not_report_failed(outbox: Outbox) -> None:
    """`outbox serve`'s stand-in for the example consumer's SQS event source mapping."""
    ids = ingest_messages(outbox, 3)
    run_relay(make_relay(outbox))
    seen: list[dict[str, Any]] = []

    def consumer(event: dict[str, Any]) -> dict[str, Any]:
        seen.extend(event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    queue_url = outbox.settings.queue_url
    delivery = QueuePoller(sqs_client(), queue_url, consumer).poll()
    assert (delivery.received, delivery.failed) == (3, 1)
    assert sorted(
        SQSRecord(record).message_attributes["message_id"].string_value for record in seen
    ) == sorted(ids)
    assert all(record["eventSource"] == "aws:sqs" for record in seen)
    counts = sqs_client().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    # The failed one waits out its visibility timeout in the queue; the other two are gone.
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "1",
    )

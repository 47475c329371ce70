"""`outbox demo`'s consumer stage: the queue read through the consumer helper (`outbox.consumer`, ADR 0019),
with the redeliveries SQS makes injected on purpose, and a side effect whose count shows it applied once.

One lane receives as an SQS event source mapping would and hands each record to `OutboxConsumer.consume`,
whose work returns one action, `ADD applied 1` on the message's item in a `shipments` table, committed in
the same transaction as `COMPLETED`. Two kinds of redelivery are injected, each at `redeliver_rate`:

* **a visibility timeout**: a completed message is not deleted (as if the function timed out after
  completing), so SQS delivers it again a second later;
* **a duplicate send**: a copy of a received message (same body, same `message_id`) is sent to the queue,
  as a producer's retry or a relay's resend would.

Both must come back as suppressed duplicates without the work running again: every message `COMPLETED`,
each shipment applied exactly once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from outbox.consumer import Consumed, OutboxConsumer
from outbox.local.consumer import lambda_sqs_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_sqs import SQSClient

    from outbox.consumer import ConsumedMessage

SHIPMENTS_KEY: Final = "message_id"
VISIBILITY_SECONDS: Final = 1
"""A message left undeleted comes back this soon: the demo's stand-in for a function's timeout."""
PROCESSING_SECONDS: Final = 30


@dataclass
class ConsumerStage:
    """What the stage did and found."""

    receives: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """completed, duplicate (suppressed), and the deliveries that were not worked on now (not_claimed...)."""
    left_undeleted: int = 0
    duplicates_sent: int = 0
    first_receipts: list[dict[str, Any]] = field(default_factory=list)
    """Every message the relay sent, once, in the order first received (the injected copies left out)."""
    applied: Counter[int] = field(default_factory=Counter)
    """How many messages had their shipment applied once, twice, ... (filled by `count_shipments`)."""


def shipments_table_definition(table_name: str) -> dict[str, Any]:
    """A side-effect table: one item per message applied, `applied` counting the applications (the demo's
    shipments; the chaos consumers' effects)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": SHIPMENTS_KEY, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": SHIPMENTS_KEY, "KeyType": "HASH"}],
    }


def consume_until_completed(
    *,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    queue_url: str,
    messages_table: str,
    shipments_table: str,
    expected: int,
    redeliver_rate: float,
    seed: int,
    budget_seconds: float,
    on_completed: Any = None,
) -> ConsumerStage:
    """Consume until `expected` messages are completed and the queue is empty, or the budget is spent."""
    stage = ConsumerStage()
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not security
    helper = OutboxConsumer(dynamodb, messages_table=messages_table, processing_seconds=PROCESSING_SECONDS)
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + queue_url.rsplit("/", 1)[-1]
    injected: set[str] = set()
    seen: set[str] = set()
    deadline = time.monotonic() + budget_seconds
    idle_polls = 0

    def work(message: ConsumedMessage) -> list[TransactWriteItemTypeDef]:
        return [apply_action(shipments_table, message.message_id)]

    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            idle_polls += 1
            if stage.outcomes["completed"] >= expected and idle_polls >= 2:
                break
            continue
        idle_polls = 0
        received: list[dict[str, Any]] = [dict(message) for message in messages]
        records = lambda_sqs_event(received, queue_arn, "us-east-1")["Records"]
        for message, record in zip(received, records, strict=True):
            stage.receives += 1
            if message["MessageId"] not in injected and message["MessageId"] not in seen:
                seen.add(message["MessageId"])
                stage.first_receipts.append(dict(message))
            try:
                outcome = helper.consume(SQSRecord(record), work)
            except Exception as exc:  # not worked on now (held elsewhere, ...): SQS delivers it again
                stage.outcomes[type(exc).__name__] += 1
                continue
            stage.outcomes["completed" if outcome is Consumed.COMPLETED else "duplicate"] += 1
            if outcome is Consumed.COMPLETED and on_completed is not None:
                on_completed()
            if rng.random() < redeliver_rate:
                copy = _duplicate(sqs, queue_url, message)
                injected.add(copy)
                stage.duplicates_sent += 1
            if outcome is Consumed.COMPLETED and rng.random() < redeliver_rate:
                stage.left_undeleted += 1  # its visibility timeout brings it back
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return stage


def apply_action(table: str, message_id: str) -> TransactWriteItemTypeDef:
    """The side effect, as the action the consumer helper commits with the completion: one more
    application of `message_id`."""
    return {
        "Update": {
            "TableName": table,
            "Key": {SHIPMENTS_KEY: {"S": message_id}},
            "UpdateExpression": "ADD applied :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def applied_counts(dynamodb: Any, table: str) -> dict[str, int]:
    """How often each message's side effect was applied, read from the table (not from what a consumer
    believes it did)."""
    applied: dict[str, int] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            applied[item[SHIPMENTS_KEY]["S"]] = int(item["applied"]["N"])
    return applied


def count_shipments(dynamodb: DynamoDBClient, shipments_table: str, stage: ConsumerStage) -> dict[str, int]:
    """Each message's shipment count (`applied_counts`), tallied on the stage."""
    applied = applied_counts(dynamodb, shipments_table)
    stage.applied = Counter(applied.values())
    return applied


def _duplicate(sqs: SQSClient, queue_url: str, message: dict[str, Any]) -> str:
    """Send a copy of `message` (same body and attributes): SQS's id of the copy."""
    attributes: dict[str, Any] = {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in message.get("MessageAttributes", {}).items()
        if "StringValue" in value
    }
    extra: dict[str, Any] = {}
    if queue_url.endswith(".fifo"):
        group = message.get("Attributes", {}).get("MessageGroupId", "demo")
        extra = {"MessageGroupId": group, "MessageDeduplicationId": f"{message['MessageId']}-copy"}
    response = sqs.send_message(
        QueueUrl=queue_url, MessageBody=message["Body"], MessageAttributes=attributes, **extra
    )
    return str(response["MessageId"])

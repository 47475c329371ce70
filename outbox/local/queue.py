"""Reading a queue to the end, for the demo and the tests' invariant checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def drain_queue(sqs: SQSClient, queue_url: str, *, empty_polls: int = 2) -> list[dict[str, Any]]:
    """Every message in the queue, deleted as read. Call it after all sending is done: on FIFO, moto only
    deduplicates against messages still in the queue."""
    received: list[dict[str, Any]] = []
    quiet = 0
    while quiet < empty_polls:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            quiet += 1
            continue
        quiet = 0
        received.extend(dict(message) for message in messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return received


def message_id_of(sqs_message: dict[str, Any]) -> str:
    return str(sqs_message["MessageAttributes"]["message_id"]["StringValue"])

"""The stand-in for an SQS event source mapping: receive from the queue, hand the messages to a consumer
function as the Lambda event it would get, and delete what it did not report as failed.

`outbox serve` runs the example consumer (`outbox.consumer.example`) through it. As with a real mapping
configured with `ReportBatchItemFailures`, a record the function reports failed stays in the queue and is
delivered again after its visibility timeout; the queue's redrive policy moves it to the dead-letter queue
after `maxReceiveCount` receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BATCH_SIZE: Final = 10
"""SQS's largest receive, and the mapping's default batch size for a standard queue."""
VISIBILITY_SECONDS: Final = 30
"""A failed record waits this long before SQS delivers it again: the example consumer's timeout."""

Consumer = Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one poll did: messages handed to the consumer, and how many it reported failed."""

    received: int = 0
    failed: int = 0


def lambda_sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """`ReceiveMessage` results as the `Records` of the event Lambda's SQS mapping sends a function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


class QueuePoller:
    """Polls one queue for one consumer function (a single lane: one batch at a time)."""

    def __init__(self, sqs: SQSClient, queue_url: str, consumer: Consumer) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._consumer = consumer
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self._arn = attributes["QueueArn"]
        self._region = self._arn.split(":")[3]

    def poll(self) -> Delivery:
        """One receive (no wait) and, if it brought messages, one invocation of the consumer."""
        messages = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=BATCH_SIZE,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return Delivery()
        records = [dict(message) for message in messages]
        response = self._consumer(lambda_sqs_event(records, self._arn, self._region))
        failed = {str(item["itemIdentifier"]) for item in response.get("batchItemFailures", [])}
        done = [message for message in records if message["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": str(m["ReceiptHandle"])} for i, m in enumerate(done)
                ],
            )
        return Delivery(received=len(records), failed=len(failed))

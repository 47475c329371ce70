"""A naive relay, for comparison: one message at a time, one call per step (≈ 5 calls per message).

Per message: `Query` the oldest entry of a shard (`Limit=1`), claim it with a conditional `UpdateItem`,
`GetItem` the message, `SendMessage`, and finalize with a two-action `TransactWriteItems` (message
PENDING→QUEUED + entry deleted). It uses the same claim condition and the same finalize as our relay, so the
comparison is about batching only. It has no retries, backoff or FIFO handling: it is a cost baseline.

A payload no item can hold is an S3 object in its layout too (the claim check, ADR 0023): the naive relay
then `HeadObject`s it and sends the same pointer as ours, one message at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from outbox.core.domain import EntryState, Status, epoch_millis, iso, utc_now
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY
from outbox.data.claim_check import PayloadObject, object_problem, pointer_attributes, pointer_body

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from outbox.core.settings import Settings

LEASE_MILLIS: Final = 60_000
_FINALIZE_UPDATE: Final = "SET #status = :queued, queued_at = :now, updated_at = :now, sqs_message_id = :sqs"
_CLAIM_CONDITION: Final = (
    "attribute_exists(message_id) AND #state = :ready AND "
    "(attribute_not_exists(claim_token) OR lease_until < :now) AND next_attempt_at <= :now"
)


@dataclass
class NaiveSummary:
    sent: int = 0
    claims_lost: int = 0
    finalize_failed: int = 0


class NaiveRelay:
    def __init__(
        self, *, dynamodb: DynamoDBClient, sqs: SQSClient, settings: Settings, s3: S3Client | None = None
    ) -> None:
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._settings = settings
        self._s3 = s3

    def run(self) -> NaiveSummary:
        """Relay every claimable entry of every shard, one at a time."""
        summary = NaiveSummary()
        for shard in range(self._settings.outbox_shards):
            self._drain_shard(str(shard), summary)
        return summary

    def _drain_shard(self, shard: str, summary: NaiveSummary) -> None:
        start_key: dict[str, Any] | None = None
        while True:
            arguments: dict[str, Any] = {
                "TableName": self._settings.outbox_table,
                "KeyConditionExpression": "#shard = :shard",
                "ExpressionAttributeNames": {"#shard": OUTBOX_PARTITION_KEY},
                "ExpressionAttributeValues": {":shard": {"S": shard}},
                "ConsistentRead": True,
                "Limit": 1,
            }
            if start_key is not None:
                arguments["ExclusiveStartKey"] = start_key
            items = self._dynamodb.query(**arguments).get("Items", [])
            if not items:
                return
            entry = items[0]
            key = {"shard": entry["shard"], "entry_id": entry["entry_id"]}
            # Relayed: the entry is gone and the next Query starts at the new oldest. Not: look past it.
            start_key = None if self._relay_one(entry, key, summary) else key

    def _relay_one(self, entry: dict[str, Any], key: dict[str, Any], summary: NaiveSummary) -> bool:
        token = str(uuid.uuid4())
        now_ms = epoch_millis(utc_now())
        try:
            self._dynamodb.update_item(
                TableName=self._settings.outbox_table,
                Key=key,
                UpdateExpression="SET claim_token = :token, lease_until = :lease",
                ConditionExpression=_CLAIM_CONDITION,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":lease": {"N": str(now_ms + LEASE_MILLIS)},
                    ":now": {"N": str(now_ms)},
                    ":ready": {"S": EntryState.READY},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                summary.claims_lost += 1
                return False
            raise
        message_id = entry[MESSAGE_KEY]["S"]
        message = self._dynamodb.get_item(
            TableName=self._settings.messages_table, Key={MESSAGE_KEY: {"S": message_id}}, ConsistentRead=True
        )["Item"]
        attributes: dict[str, Any] = {"message_id": {"DataType": "String", "StringValue": message_id}}
        for name, value in message.get("attributes", {}).get("M", {}).items():
            attributes[name] = {"DataType": "String", "StringValue": value["S"]}
        if "payload" in message:
            body = message["payload"]["S"]
        else:  # an S3 object: checked, then pointed at
            obj = PayloadObject.from_uri(message["payload_ref"]["S"], int(message["payload_size"]["N"]))
            problem = "no S3 client" if self._s3 is None else object_problem(self._s3, obj)
            if problem is not None:
                raise RuntimeError(f"{message_id}: {obj.uri} cannot be sent: {problem}")
            body = pointer_body(obj)
            attributes.update(pointer_attributes(obj))
        sent = self._sqs.send_message(
            QueueUrl=self._settings.queue_url, MessageBody=body, MessageAttributes=attributes
        )
        now = iso(utc_now())
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._settings.messages_table,
                            "Key": {MESSAGE_KEY: {"S": message_id}},
                            "UpdateExpression": _FINALIZE_UPDATE,
                            "ConditionExpression": "#status = :pending",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":queued": {"S": Status.QUEUED},
                                ":pending": {"S": Status.PENDING},
                                ":now": {"S": now},
                                ":sqs": {"S": sent["MessageId"]},
                            },
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self._settings.outbox_table,
                            "Key": key,
                            "ConditionExpression": "claim_token = :token",
                            "ExpressionAttributeValues": {":token": {"S": token}},
                        }
                    },
                ]
            )
        except ClientError:
            summary.finalize_failed += 1
            return False
        summary.sent += 1
        return True

"""Operator actions on FAILED messages: `requeue` (back to PENDING, in its place) and `skip` (release a
FIFO group from a parked entry). Each is one transaction, and records who and when (DESIGN §4.5)."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from outbox.domain import (
    EntryState,
    Status,
    epoch_millis,
    iso,
    new_time_ordered_id,
    time_ordered_id_millis,
    utc_now,
)
from outbox.errors import InvalidRequest, MessageNotFound
from outbox.schema import FAILED_INDEX, MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY
from outbox.transactions import client_request_token

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from outbox.settings import Settings


# To stderr: the audit line must not mix with a command's --json output on stdout.
logger = Logger(service="outbox-admin", logger_handler=logging.StreamHandler(sys.stderr))


class NotFailed(InvalidRequest):
    """Only a FAILED message can be requeued or skipped."""


@dataclass(frozen=True, slots=True)
class RequeueResult:
    message_id: str
    reused_entry: bool
    """True: the parked entry went back to READY in its place; False: a new entry was written."""


def requeue(
    message_id: str, *, dynamodb: DynamoDBClient, settings: Settings, actor: str, now: datetime | None = None
) -> RequeueResult:
    """FAILED → PENDING, and the parked entry back to READY with its attempts reset (a new entry if the
    parked one was skipped). Raises `MessageNotFound` or `NotFailed`."""
    moment = now or utc_now()
    message = _failed_message(dynamodb, settings, message_id)
    shard, entry_id = message["shard"]["S"], message["entry_id"]["S"]
    entry = dynamodb.get_item(
        TableName=settings.outbox_table,
        Key={OUTBOX_PARTITION_KEY: {"S": shard}, OUTBOX_SORT_KEY: {"S": entry_id}},
        ConsistentRead=True,
    ).get("Item")
    reuse = entry is not None and entry.get("state", {}).get("S") == EntryState.PARKED
    message_update: dict[str, Any] = {
        "TableName": settings.messages_table,
        "Key": {MESSAGE_KEY: {"S": message_id}},
        "UpdateExpression": (
            "SET #status = :pending, updated_at = :now, requeued_at = :now, requeued_by = :actor, "
            "attempts = :zero, entry_id = :entry REMOVE failed_at"
        ),
        "ConditionExpression": "#status = :failed",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {
            ":pending": {"S": Status.PENDING},
            ":failed": {"S": Status.FAILED},
            ":now": {"S": iso(moment)},
            ":actor": {"S": actor},
            ":zero": {"N": "0"},
        },
    }
    if reuse:
        message_update["ExpressionAttributeValues"][":entry"] = {"S": entry_id}
        entry_action: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": settings.outbox_table,
                "Key": {OUTBOX_PARTITION_KEY: {"S": shard}, OUTBOX_SORT_KEY: {"S": entry_id}},
                "UpdateExpression": (
                    "SET #state = :ready, attempts = :zero, next_attempt_at = :now_ms "
                    "REMOVE last_error, first_send_at, claim_token, lease_until"
                ),
                "ConditionExpression": "#state = :parked",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {
                    ":ready": {"S": EntryState.READY},
                    ":parked": {"S": EntryState.PARKED},
                    ":zero": {"N": "0"},
                    ":now_ms": {"N": str(epoch_millis(moment))},
                },
            }
        }
    else:
        new_entry_id = new_time_ordered_id(epoch_millis(moment))
        message_update["ExpressionAttributeValues"][":entry"] = {"S": new_entry_id}
        item: dict[str, Any] = {
            OUTBOX_PARTITION_KEY: {"S": shard},
            OUTBOX_SORT_KEY: {"S": new_entry_id},
            MESSAGE_KEY: {"S": message_id},
            "state": {"S": EntryState.READY},
            "attempts": {"N": "0"},
            "next_attempt_at": {"N": str(epoch_millis(moment))},
        }
        if "group_id" in message:
            item["group_id"] = message["group_id"]
        entry_action = {"Put": {"TableName": settings.outbox_table, "Item": item}}
    _transact(
        dynamodb, [cast("TransactWriteItemTypeDef", {"Update": message_update}), entry_action], message_id
    )
    logger.info("message requeued", message_id=message_id, actor=actor, reused_entry=reuse)
    return RequeueResult(message_id, reused_entry=reuse)


def skip(message_id: str, *, dynamodb: DynamoDBClient, settings: Settings, actor: str) -> None:
    """Delete a FAILED message's parked entry so its FIFO group moves on; the message stays FAILED."""
    message = _failed_message(dynamodb, settings, message_id)
    now = iso(utc_now())
    _transact(
        dynamodb,
        [
            {
                "Update": {
                    "TableName": settings.messages_table,
                    "Key": {MESSAGE_KEY: {"S": message_id}},
                    "UpdateExpression": "SET skipped_at = :now, skipped_by = :actor, updated_at = :now",
                    "ConditionExpression": "#status = :failed",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":now": {"S": now},
                        ":actor": {"S": actor},
                        ":failed": {"S": Status.FAILED},
                    },
                }
            },
            {
                "Delete": {
                    "TableName": settings.outbox_table,
                    "Key": {
                        OUTBOX_PARTITION_KEY: message["shard"],
                        OUTBOX_SORT_KEY: message["entry_id"],
                    },
                    "ConditionExpression": "#state = :parked",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {":parked": {"S": EntryState.PARKED}},
                }
            },
        ],
        message_id,
    )
    logger.info("parked entry skipped", message_id=message_id, actor=actor)


def failed_message_ids(dynamodb: DynamoDBClient, settings: Settings) -> Iterator[str]:
    """Every FAILED message, from the sparse `failed` index (only FAILED items carry `failed_at`)."""
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=settings.messages_table, IndexName=FAILED_INDEX):
        for item in page.get("Items", []):
            yield item[MESSAGE_KEY]["S"]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    statuses: dict[str, int]
    depth_per_shard: dict[str, int]
    parked: int
    oldest_pending_age_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "statuses": self.statuses,
            "outbox_depth_per_shard": self.depth_per_shard,
            "outbox_depth": sum(self.depth_per_shard.values()),
            "parked": self.parked,
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 3),
        }


def stats(dynamodb: DynamoDBClient, settings: Settings) -> OutboxStats:
    """Counts per status (a scan of the Messages table: an operator's tool, not for a hot path), outbox
    depth per shard, parked entries, and the age of the oldest entry still to send."""
    statuses: Counter[str] = Counter()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=settings.messages_table,
        ProjectionExpression="#status",
        ExpressionAttributeNames={"#status": "status"},
    ):
        statuses.update(item["status"]["S"] for item in page.get("Items", []))
    depth: dict[str, int] = {}
    parked = 0
    oldest_ms: int | None = None
    for shard in range(settings.outbox_shards):
        count = 0
        for page in dynamodb.get_paginator("query").paginate(
            TableName=settings.outbox_table,
            KeyConditionExpression="#shard = :shard",
            ExpressionAttributeNames={"#shard": OUTBOX_PARTITION_KEY, "#state": "state"},
            ExpressionAttributeValues={":shard": {"S": str(shard)}},
            ProjectionExpression="#state, entry_id",
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                count += 1
                if item.get("state", {}).get("S") == EntryState.PARKED:
                    parked += 1
                elif oldest_ms is None or time_ordered_id_millis(item[OUTBOX_SORT_KEY]["S"]) < oldest_ms:
                    oldest_ms = time_ordered_id_millis(item[OUTBOX_SORT_KEY]["S"])
        depth[str(shard)] = count
    age = 0.0 if oldest_ms is None else max(0.0, (epoch_millis(utc_now()) - oldest_ms) / 1000)
    return OutboxStats(dict(statuses), depth, parked, age)


def _failed_message(dynamodb: DynamoDBClient, settings: Settings, message_id: str) -> dict[str, Any]:
    item = dynamodb.get_item(
        TableName=settings.messages_table, Key={MESSAGE_KEY: {"S": message_id}}, ConsistentRead=True
    ).get("Item")
    if item is None:
        raise MessageNotFound(message_id)
    status = item["status"]["S"]
    if status != Status.FAILED:
        raise NotFailed("not_failed", f"message {message_id} is {status}, not FAILED", "message_id")
    return dict(item)


def _transact(dynamodb: DynamoDBClient, items: list[TransactWriteItemTypeDef], message_id: str) -> None:
    try:
        dynamodb.transact_write_items(TransactItems=items, ClientRequestToken=client_request_token(items))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            raise NotFailed(
                "changed_concurrently",
                f"message {message_id} changed while this ran; look again",
                "message_id",
            ) from exc
        raise

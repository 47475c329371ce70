"""The operator commands' transaction actions, built as data: `requeue` (message FAILED → PENDING, its
parked entry READY again or a new entry) and `skip` (the parked entry deleted, the message's TTL started).
Nothing here talks to AWS: `outbox.ops.admin` runs them through `outbox.data.transact`.

Every action is guarded by a condition on what the command read (ADR 0013, "Guard inventory"): a
transaction that finds the message or entry changed since is cancelled and the command says so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from outbox.core.domain import EntryState, Status, epoch_millis, iso
from outbox.core.schema import MESSAGE_KEY, TTL_ATTRIBUTE
from outbox.data.transactions import ready_entry_item

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    from outbox.data.messages import MessageRecord


def requeue_message_action(
    *, messages_table: str, message_id: str, entry_id: str, actor: str, now: datetime
) -> TransactWriteItemTypeDef:
    """The message FAILED → PENDING with its attempts reset, pointing at `entry_id`, and who did it. The
    message is owed again, so it loses its TTL."""
    return {
        "Update": {
            "TableName": messages_table,
            "Key": {MESSAGE_KEY: {"S": message_id}},
            "UpdateExpression": (
                "SET #status = :pending, updated_at = :now, requeued_at = :now, requeued_by = :actor, "
                "attempts = :zero, entry_id = :entry REMOVE failed_at, #expires"
            ),
            "ConditionExpression": "#status = :failed",
            "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":pending": {"S": Status.PENDING},
                ":failed": {"S": Status.FAILED},
                ":now": {"S": iso(now)},
                ":actor": {"S": actor},
                ":zero": {"N": "0"},
                ":entry": {"S": entry_id},
            },
        }
    }


def reset_parked_entry_action(
    *, outbox_table: str, key: dict[str, AttributeValueTypeDef], now: datetime
) -> TransactWriteItemTypeDef:
    """The parked entry READY again in its place, due now, attempts reset. It keeps `first_send_at` if it
    has one: an earlier claim may have put the message in the queue, so the relay counts the resend as a
    possible duplicate (ADR 0009)."""
    return {
        "Update": {
            "TableName": outbox_table,
            "Key": key,
            "UpdateExpression": (
                "SET #state = :ready, attempts = :zero, next_attempt_at = :now_ms "
                "REMOVE last_error, claim_token, lease_until"
            ),
            "ConditionExpression": "#state = :parked",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":ready": {"S": EntryState.READY},
                ":parked": {"S": EntryState.PARKED},
                ":zero": {"N": "0"},
                ":now_ms": {"N": str(epoch_millis(now))},
            },
        }
    }


def new_entry_action(
    *, outbox_table: str, message: MessageRecord, shard: str, entry_id: str, now: datetime
) -> TransactWriteItemTypeDef:
    """A new READY entry for a message whose parked entry was skipped, in the message's shard, due now.
    The id is new, so the entry queues behind everything written before it."""
    item = ready_entry_item(
        shard=shard,
        entry_id=entry_id,
        message_id=message.message_id,
        group_id=message.group_id,
        due_ms=epoch_millis(now),
    )
    return {"Put": {"TableName": outbox_table, "Item": item}}


def skip_message_action(
    *, messages_table: str, message_id: str, actor: str, now: datetime, retention_days: int
) -> TransactWriteItemTypeDef:
    """The FAILED message stays FAILED, marked skipped by `actor`; no longer owed to the queue, its TTL
    starts (now + retention)."""
    expires = int((now + timedelta(days=retention_days)).timestamp())
    return {
        "Update": {
            "TableName": messages_table,
            "Key": {MESSAGE_KEY: {"S": message_id}},
            "UpdateExpression": (
                "SET skipped_at = :now, skipped_by = :actor, updated_at = :now, #expires = :expires"
            ),
            "ConditionExpression": "#status = :failed",
            "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":now": {"S": iso(now)},
                ":actor": {"S": actor},
                ":failed": {"S": Status.FAILED},
                ":expires": {"N": str(expires)},
            },
        }
    }


def delete_parked_entry_action(
    *, outbox_table: str, key: dict[str, AttributeValueTypeDef], message_id: str | None = None
) -> TransactWriteItemTypeDef:
    """The entry deleted if it is still parked; with `message_id`, only if it is that message's (an
    orphaned entry, found by scanning for it)."""
    condition = "#state = :parked"
    values: dict[str, Any] = {":parked": {"S": EntryState.PARKED}}
    if message_id is not None:
        condition += " AND message_id = :message_id"
        values[":message_id"] = {"S": message_id}
    return {
        "Delete": {
            "TableName": outbox_table,
            "Key": key,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        }
    }

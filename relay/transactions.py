"""The relay's transaction actions, built as data: claim an entry, finalize a sent message (message QUEUED,
entry deleted) and poison one (message FAILED, entry PARKED). Nothing here talks to AWS: `relay.store`
runs them through `outbox.data.transact`.

Every action is guarded by a condition (ADR 0013, "Guard inventory"): a status, a claim token, a stamp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from outbox.core.domain import EntryState, Status, iso
from outbox.core.schema import MESSAGE_KEY, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from relay.entries import Entry

MAX_ERROR_CHARACTERS: Final = 1000
"""A recorded error is cut to this length: it is for people, and every claim rewrites the entry."""
CLAIM_CONDITION: Final = (
    "attribute_exists(message_id) AND #state = :ready AND "
    "(attribute_not_exists(claim_token) OR lease_until < :now OR claim_token = :token) AND "
    "next_attempt_at <= :now"
)
"""The entry still exists, is READY, holds no live claim but maybe this relay's own (a resent claim), and
is due. The token of an expired lease may be taken over."""


def claim_action(
    entry: Entry, *, outbox_table: str, token: str, now_ms: int, lease_until_ms: int
) -> TransactWriteItemTypeDef:
    """Take the entry under `token` until `lease_until_ms`. The first claim that may send it stamps
    `first_send_at`; a later claim keeps the stamp, which marks a possible resend (ADR 0009)."""
    return {
        "Update": {
            "TableName": outbox_table,
            "Key": entry.key,
            "UpdateExpression": (
                "SET claim_token = :token, lease_until = :lease, "
                "first_send_at = if_not_exists(first_send_at, :now)"
            ),
            "ConditionExpression": CLAIM_CONDITION,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":token": {"S": token},
                ":lease": {"N": str(lease_until_ms)},
                ":now": {"N": str(now_ms)},
                ":ready": {"S": EntryState.READY},
            },
        }
    }


def queue_message_action(
    entry: Entry, sqs_message_id: str, *, messages_table: str, now: datetime, retention: timedelta
) -> TransactWriteItemTypeDef:
    """The sent message PENDING → QUEUED. Its TTL starts here (now + `retention`): nothing is owed for it
    any more. On a failed condition the message comes back (`ALL_OLD`): moved on, or gone."""
    return {
        "Update": {
            "TableName": messages_table,
            "Key": {MESSAGE_KEY: {"S": entry.message_id}},
            "UpdateExpression": (
                "SET #status = :queued, queued_at = :now, updated_at = :now, sqs_message_id = :sqs, "
                "#expires = :expires"
            ),
            "ConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":queued": {"S": Status.QUEUED},
                ":pending": {"S": Status.PENDING},
                ":now": {"S": iso(now)},
                ":sqs": {"S": sqs_message_id},
                ":expires": {"N": str(int((now + retention).timestamp()))},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def delete_entry_action(entry: Entry, *, outbox_table: str, token: str) -> TransactWriteItemTypeDef:
    """The sent message's entry deleted, while the claim is still `token`'s."""
    return {
        "Delete": {
            "TableName": outbox_table,
            "Key": entry.key,
            "ConditionExpression": "claim_token = :token",
            "ExpressionAttributeValues": {":token": {"S": token}},
        }
    }


def fail_message_action(
    entry: Entry, *, messages_table: str, attempts: int, error: str, now: datetime
) -> TransactWriteItemTypeDef:
    """The message PENDING → FAILED, recording `attempts` and the error. A FAILED message is still owed
    (its entry is parked for `requeue`): no TTL."""
    stamp = iso(now)
    return {
        "Update": {
            "TableName": messages_table,
            "Key": {MESSAGE_KEY: {"S": entry.message_id}},
            "UpdateExpression": (
                "SET #status = :failed, last_error = :error, failed_at = :now, updated_at = :now, "
                "attempts = :attempts REMOVE #expires"
            ),
            "ConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":failed": {"S": Status.FAILED},
                ":pending": {"S": Status.PENDING},
                ":error": {"S": error[:MAX_ERROR_CHARACTERS]},
                ":now": {"S": stamp},
                ":attempts": {"N": str(attempts)},
            },
        }
    }


def park_entry_action(
    entry: Entry, *, outbox_table: str, token: str, error: str, unstamp_ms: int | None
) -> TransactWriteItemTypeDef:
    """The entry PARKED in its place while the claim is still `token`'s, its count one higher (`ADD`: never
    a count read earlier). With `unstamp_ms`, the `first_send_at` this claim set (it equals `unstamp_ms`) is
    removed, and only if it is that one. On a failed condition the entry comes back (`ALL_OLD`)."""
    removes = "claim_token, lease_until" + (", first_send_at" if unstamp_ms is not None else "")
    condition = "claim_token = :token" + (
        " AND first_send_at = :claimed_at" if unstamp_ms is not None else ""
    )
    values: dict[str, Any] = {
        ":parked": {"S": EntryState.PARKED},
        ":error": {"S": error[:MAX_ERROR_CHARACTERS]},
        ":token": {"S": token},
        ":one": {"N": "1"},
    }
    if unstamp_ms is not None:
        values[":claimed_at"] = {"N": str(unstamp_ms)}
    return {
        "Update": {
            "TableName": outbox_table,
            "Key": entry.key,
            "UpdateExpression": (
                f"SET #state = :parked, last_error = :error REMOVE {removes} ADD attempts :one"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }

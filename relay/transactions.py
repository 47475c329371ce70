"""The relay's transaction actions, built as data: finalize a sent message (message QUEUED, entry
deleted), roll a failed send back, and poison one (message FAILED, entry PARKED). Nothing here talks to
AWS: `relay.store` runs them through `outbox.data.transact`, each transaction behind the shard lease's
`ConditionCheck` (`relay.leases.ShardLeases.check_action`, ADR 0018).

Every write is guarded (ADR 0013, "Guard inventory"): a status, the entry still READY, the lease check.
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
"""A recorded error is cut to this length: it is for people, and every rollback rewrites the entry."""
# Every relay update of an entry is conditional on `#state = :ready`: it still exists and is READY. Under
# the shard's lease no other relay writes it (the lease's `ConditionCheck` fences them), but an update of a
# deleted entry would create a half item (no message id) that breaks every later read of the shard: an
# entry removed meanwhile (by hand, or by a relay of the version before ADR 0018 finishing its claim
# during a deploy).


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


def delete_entry_action(entry: Entry, *, outbox_table: str) -> TransactWriteItemTypeDef:
    """The sent (or stale) message's entry deleted. No condition of its own (ADR 0018): the transaction's
    lease check is the fence against another relay, the message's `PENDING` condition decides a finalize,
    operators delete only PARKED entries, and a delete never creates an item."""
    return {"Delete": {"TableName": outbox_table, "Key": entry.key}}


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
    entry: Entry, *, outbox_table: str, error: str, sent_at_ms: int | None
) -> TransactWriteItemTypeDef:
    """The entry PARKED in its place while still READY (`#state = :ready`), its count one higher (`ADD`:
    never a count read earlier). `sent_at_ms`: the send may have reached SQS, so `first_send_at` is
    stamped (kept if set) and a later `requeue` counts the resend."""
    stamp = ", first_send_at = if_not_exists(first_send_at, :sent)" if sent_at_ms is not None else ""
    values: dict[str, Any] = {
        ":parked": {"S": EntryState.PARKED},
        ":ready": {"S": EntryState.READY},
        ":error": {"S": error[:MAX_ERROR_CHARACTERS]},
        ":one": {"N": "1"},
    }
    if sent_at_ms is not None:
        values[":sent"] = {"N": str(sent_at_ms)}
    return {
        "Update": {
            "TableName": outbox_table,
            "Key": entry.key,
            "UpdateExpression": f"SET #state = :parked, last_error = :error{stamp} ADD attempts :one",
            "ConditionExpression": "#state = :ready",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        }
    }


def roll_back_entry_action(
    entry: Entry,
    *,
    outbox_table: str,
    counted: bool,
    next_attempt_at_ms: int,
    error: str,
    sent_at_ms: int | None,
) -> TransactWriteItemTypeDef:
    """A failed send given back to wait until `next_attempt_at_ms` (backoff), while the entry is still
    READY (`#state = :ready`). `counted`: one more failed attempt, added to the stored count (`ADD`).
    `sent_at_ms`: the send may have reached SQS, so `first_send_at` is stamped unless set (ADR 0009)."""
    sets = ["next_attempt_at = :next", "last_error = :error"]
    values: dict[str, Any] = {
        ":ready": {"S": EntryState.READY},
        ":next": {"N": str(next_attempt_at_ms)},
        ":error": {"S": error[:MAX_ERROR_CHARACTERS]},
    }
    if sent_at_ms is not None:
        sets.append("first_send_at = if_not_exists(first_send_at, :sent)")
        values[":sent"] = {"N": str(sent_at_ms)}
    expression = "SET " + ", ".join(sets)
    if counted:
        expression += " ADD attempts :one"
        values[":one"] = {"N": "1"}
    return {
        "Update": {
            "TableName": outbox_table,
            "Key": entry.key,
            "UpdateExpression": expression,
            "ConditionExpression": "#state = :ready",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        }
    }

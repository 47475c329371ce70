"""The consumer side's status writes, built as data: claim (→ PROCESSING), complete (→ COMPLETED, in one
transaction with the consumer's own writes) and give back (→ QUEUED after a failure). ADR 0019.

Each is conditional on the status and, after the claim, on the claim's own token: a consumer whose claim
ran out and was taken over by another can neither complete nor give back a message it no longer holds.
Nothing here talks to AWS; `outbox.consumer.processor` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from outbox.core.domain import Status, epoch_millis, iso
from outbox.core.schema import MESSAGE_KEY, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateItemInputTypeDef

MAX_ERROR_CHARACTERS: Final = 1000
_NAMES: Final = {"#status": "status", "#expires": TTL_ATTRIBUTE}


@dataclass(frozen=True, slots=True)
class Claim:
    """One consumer's hold on one message: `token` fences its later writes, until `until_ms` (epoch ms)."""

    message_id: str
    token: str
    until_ms: int


def _key(message_id: str) -> dict[str, Any]:
    return {MESSAGE_KEY: {"S": message_id}}


def _expires(now: datetime, retention: timedelta) -> dict[str, str]:
    """Every consumer-side write pushes the TTL out again: nothing is removed while it is being worked on."""
    return {"N": str(int((now + retention).timestamp()))}


def claim_update(
    claim: Claim, *, messages_table: str, now: datetime, retention: timedelta
) -> UpdateItemInputTypeDef:
    """PENDING, QUEUED or DEAD_LETTERED → PROCESSING under `claim`, or take over a PROCESSING claim that
    ran out. DEAD_LETTERED: SQS's own redrive moved the message back from the dead-letter queue.

    PENDING too: SQS can deliver a message before the relay's finalize has marked it QUEUED; the finalize
    then finds it moved on and only deletes its entry (docs/design.md §4.4). `queued_at` is set if the
    finalize has not. A COMPLETED message is never claimed: its delivery is a duplicate. `ALL_OLD` on a
    failed condition tells the caller which case it is."""
    stamp = iso(now)
    return {
        "TableName": messages_table,
        "Key": _key(claim.message_id),
        "UpdateExpression": (
            "SET #status = :processing, processing_token = :token, processing_until = :until, "
            "processing_started_at = :now, updated_at = :now, queued_at = if_not_exists(queued_at, :now), "
            "#expires = :expires ADD receive_count :one"
        ),
        "ConditionExpression": (
            "#status IN (:pending, :queued, :dead) OR (#status = :processing AND processing_until < :now_ms)"
        ),
        "ExpressionAttributeNames": _NAMES,
        "ExpressionAttributeValues": {
            ":processing": {"S": Status.PROCESSING},
            ":pending": {"S": Status.PENDING},
            ":queued": {"S": Status.QUEUED},
            ":dead": {"S": Status.DEAD_LETTERED},
            ":token": {"S": claim.token},
            ":until": {"N": str(claim.until_ms)},
            ":now": {"S": stamp},
            ":now_ms": {"N": str(epoch_millis(now))},
            ":expires": _expires(now, retention),
            ":one": {"N": "1"},
        },
        "ReturnValues": "ALL_NEW",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def complete_action(
    claim: Claim, *, messages_table: str, now: datetime, retention: timedelta
) -> TransactWriteItemTypeDef:
    """PROCESSING → COMPLETED while the claim is still this one's: the first action of the completing
    transaction, whose other actions are the consumer's own writes (all or nothing)."""
    stamp = iso(now)
    return {
        "Update": {
            "TableName": messages_table,
            "Key": _key(claim.message_id),
            "UpdateExpression": (
                "SET #status = :completed, completed_at = :now, updated_at = :now, #expires = :expires "
                "REMOVE processing_token, processing_until"
            ),
            "ConditionExpression": "#status = :processing AND processing_token = :token",
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": {
                ":completed": {"S": Status.COMPLETED},
                ":processing": {"S": Status.PROCESSING},
                ":token": {"S": claim.token},
                ":now": {"S": stamp},
                ":expires": _expires(now, retention),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def give_back_update(
    claim: Claim, *, messages_table: str, error: str, now: datetime, retention: timedelta
) -> UpdateItemInputTypeDef:
    """PROCESSING → QUEUED after the consumer's function failed, with the error and one more consumer
    attempt, while the claim is still this one's. SQS redelivers the message after its visibility timeout
    and, after the queue's `maxReceiveCount`, moves it to the dead-letter queue."""
    stamp = iso(now)
    return {
        "TableName": messages_table,
        "Key": _key(claim.message_id),
        "UpdateExpression": (
            "SET #status = :queued, last_error = :error, updated_at = :now, #expires = :expires "
            "REMOVE processing_token, processing_until ADD consumer_attempts :one"
        ),
        "ConditionExpression": "#status = :processing AND processing_token = :token",
        "ExpressionAttributeNames": _NAMES,
        "ExpressionAttributeValues": {
            ":queued": {"S": Status.QUEUED},
            ":processing": {"S": Status.PROCESSING},
            ":token": {"S": claim.token},
            ":error": {"S": error[:MAX_ERROR_CHARACTERS]},
            ":now": {"S": stamp},
            ":expires": _expires(now, retention),
            ":one": {"N": "1"},
        },
    }

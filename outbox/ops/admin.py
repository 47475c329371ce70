"""Operator actions on FAILED messages: `requeue` (back to PENDING, in its place) and `skip` (release a
FIFO group from a parked entry). Each is one transaction, and records who and when (docs/design.md §4.5)."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from outbox.core.domain import (
    EntryState,
    Status,
    epoch_millis,
    is_issued_message_id,
    new_time_ordered_id,
    time_ordered_id_millis,
    utc_now,
)
from outbox.core.errors import InvalidRequest, MessageNotFound
from outbox.core.schema import FAILED_INDEX, MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY, TTL_ATTRIBUTE
from outbox.data.messages import MessageRecord, batch_get_messages, read_message
from outbox.data.transact import TransactionCancelled, TransactionRetryPolicy
from outbox.ops.transactions import (
    delete_parked_entry_action,
    new_entry_action,
    requeue_message_action,
    reset_parked_entry_action,
    skip_message_action,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    from outbox.core.settings import Settings


# To stderr: the audit line must not mix with a command's --json output on stdout.
logger = Logger(service="outbox-admin", logger_handler=logging.StreamHandler(sys.stderr))

CONFLICT_RETRY: Final = TransactionRetryPolicy()
"""An operator's transaction that only conflicted (another transaction held an item at that moment, or
its partition was throttled) is sent again, a few times, before the command reports the change."""


class NotFailed(InvalidRequest):
    """Only a FAILED message can be requeued or skipped."""


class MessageGone(InvalidRequest):
    """Only a parked entry is left of the message: it cannot be requeued, only skipped."""


@dataclass(frozen=True, slots=True)
class RequeueResult:
    message_id: str
    reused_entry: bool
    """True: the parked entry went back to READY in its place; False: a new entry was written."""


def requeue(
    message_id: str, *, dynamodb: DynamoDBClient, settings: Settings, actor: str, now: datetime | None = None
) -> RequeueResult:
    """FAILED → PENDING, and the parked entry back to READY with its attempts reset (a new entry if the
    parked one was skipped). The entry keeps `first_send_at` if it has one (an earlier claim may have put
    the message in the queue), so the relay counts the resend as a possible duplicate (ADR 0009).
    The message is owed again, so it loses its TTL. Raises `MessageGone` (only
    its parked entry is left: `skip` releases it), `MessageNotFound` or `NotFailed`."""
    moment = now or utc_now()
    message = _failed_message(dynamodb, settings, message_id, for_requeue=True)
    shard, entry_id, key = _entry_of(message)
    entry = dynamodb.get_item(TableName=settings.outbox_table, Key=key, ConsistentRead=True).get("Item")
    reuse = entry is not None and entry.get("state", {}).get("S") == EntryState.PARKED
    if reuse:
        entry_action = reset_parked_entry_action(outbox_table=settings.outbox_table, key=key, now=moment)
    else:
        entry_id = new_time_ordered_id(epoch_millis(moment))
        entry_action = new_entry_action(
            outbox_table=settings.outbox_table, message=message, shard=shard, entry_id=entry_id, now=moment
        )
    message_action = requeue_message_action(
        messages_table=settings.messages_table,
        message_id=message_id,
        entry_id=entry_id,
        actor=actor,
        now=moment,
    )
    _transact(dynamodb, [message_action, entry_action], message_id)
    logger.info("message requeued", message_id=message_id, actor=actor, reused_entry=reuse)
    return RequeueResult(message_id, reused_entry=reuse)


def skip(
    message_id: str, *, dynamodb: DynamoDBClient, settings: Settings, actor: str, now: datetime | None = None
) -> SkipResult:
    """Delete a FAILED message's parked entry so its FIFO group moves on; the message stays FAILED and,
    no longer owed to the queue, gets its TTL (now + retention).

    A parked entry whose message is gone (deleted by hand, or by the TTL that items written before
    version 0.2 carried while owed) would hold its FIFO group for ever: `skip` finds it by message id and
    deletes it too."""
    moment = now or utc_now()
    try:
        message = _failed_message(dynamodb, settings, message_id)
    except MessageNotFound:
        orphan = _orphaned_parked_entry(dynamodb, settings, message_id)
        if orphan is None:
            raise
        orphan_action = delete_parked_entry_action(
            outbox_table=settings.outbox_table, key=orphan, message_id=message_id
        )
        _transact(dynamodb, [orphan_action], message_id)
        logger.info("orphaned parked entry skipped", message_id=message_id, actor=actor)
        return SkipResult(message_id, orphaned=True)
    _, _, key = _entry_of(message)
    message_action = skip_message_action(
        messages_table=settings.messages_table,
        message_id=message_id,
        actor=actor,
        now=moment,
        retention_days=settings.retention_days,
    )
    entry_action = delete_parked_entry_action(outbox_table=settings.outbox_table, key=key)
    _transact(dynamodb, [message_action, entry_action], message_id)
    logger.info("parked entry skipped", message_id=message_id, actor=actor)
    return SkipResult(message_id, orphaned=False)


@dataclass(frozen=True, slots=True)
class SkipResult:
    message_id: str
    orphaned: bool
    """True: the message was gone and only its parked entry was deleted."""


def _parked_entries(dynamodb: DynamoDBClient, settings: Settings) -> Iterator[dict[str, Any]]:
    """Every parked entry, shard by shard (an operator's read: parked entries are few)."""
    for shard in range(settings.outbox_shards):
        for page in dynamodb.get_paginator("query").paginate(
            TableName=settings.outbox_table,
            KeyConditionExpression="#shard = :shard",
            FilterExpression="#state = :parked",
            ExpressionAttributeNames={"#shard": OUTBOX_PARTITION_KEY, "#state": "state"},
            ExpressionAttributeValues={":shard": {"S": str(shard)}, ":parked": {"S": EntryState.PARKED}},
            ConsistentRead=True,
        ):
            yield from page.get("Items", [])


def _orphaned_parked_entry(
    dynamodb: DynamoDBClient, settings: Settings, message_id: str
) -> dict[str, AttributeValueTypeDef] | None:
    for entry in _parked_entries(dynamodb, settings):
        if entry[MESSAGE_KEY]["S"] == message_id:
            return {
                OUTBOX_PARTITION_KEY: entry[OUTBOX_PARTITION_KEY],
                OUTBOX_SORT_KEY: entry[OUTBOX_SORT_KEY],
            }
    return None


def orphaned_parked_message_ids(dynamodb: DynamoDBClient, settings: Settings) -> list[str]:
    """Parked entries whose message is gone: each holds its FIFO group until `skip` drops it."""
    parked = [entry[MESSAGE_KEY]["S"] for entry in _parked_entries(dynamodb, settings)]
    # The relay's bounded read: `ReadsUnprocessed` if DynamoDB keeps leaving keys unprocessed.
    found = batch_get_messages(dynamodb, settings.messages_table, parked)
    return [mid for mid in parked if mid not in found]


@dataclass(frozen=True, slots=True)
class RequeueAllResult:
    requeued: list[RequeueResult]
    skipped: dict[str, str]
    """Message id → why it was left alone (no longer FAILED, gone: the index is eventually consistent)."""


def requeue_all_failed(
    *,
    dynamodb: DynamoDBClient,
    settings: Settings,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> RequeueAllResult:
    """Requeue every message the `failed` index lists. The index is eventually consistent: a message it
    still lists may have been requeued or skipped meanwhile; that one is left alone and the rest go on."""
    ids = list(failed_message_ids(dynamodb, settings))
    requeued: list[RequeueResult] = []
    skipped: dict[str, str] = {}
    for done, message_id in enumerate(ids, start=1):
        try:
            requeued.append(requeue(message_id, dynamodb=dynamodb, settings=settings, actor=actor))
        except (NotFailed, MessageNotFound) as exc:
            skipped[message_id] = exc.message if isinstance(exc, InvalidRequest) else "no such message"
        if progress is not None:
            progress(done, len(ids))
    return RequeueAllResult(requeued, skipped)


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
    orphaned: list[str]
    """Message ids of parked entries whose message is gone (`outbox skip ID` drops each)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "statuses": self.statuses,
            "outbox_depth_per_shard": self.depth_per_shard,
            "outbox_depth": sum(self.depth_per_shard.values()),
            "parked": self.parked,
            "parked_without_message": len(self.orphaned),
            "parked_without_message_ids": self.orphaned[:20],
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
    orphaned = orphaned_parked_message_ids(dynamodb, settings) if parked else []
    return OutboxStats(dict(statuses), depth, parked, age, orphaned)


@dataclass
class TtlCleanup:
    checked: int = 0
    cleared: int = 0
    changed_meanwhile: int = 0


def clear_owed_ttl(
    dynamodb: DynamoDBClient,
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Callable[[TtlCleanup], None] | None = None,
) -> TtlCleanup:
    """A one-off for tables written before version 0.2, whose ingest gave every message a TTL: remove it
    from each message still owed to the queue (PENDING, or FAILED and not skipped), so DynamoDB cannot
    delete one before it is sent. Each removal is conditional on the status read, so a message the relay
    finalizes meanwhile keeps the TTL its finalize set. Safe to run while relays run, and to run again."""
    result = TtlCleanup()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=settings.messages_table,
        ProjectionExpression="#id, #status",
        FilterExpression=(
            "attribute_exists(#expires) AND "
            "(#status = :pending OR (#status = :failed AND attribute_not_exists(skipped_at)))"
        ),
        ExpressionAttributeNames={"#id": MESSAGE_KEY, "#status": "status", "#expires": TTL_ATTRIBUTE},
        ExpressionAttributeValues={":pending": {"S": Status.PENDING}, ":failed": {"S": Status.FAILED}},
    ):
        for item in page.get("Items", []):
            result.checked += 1
            if dry_run:
                continue
            try:
                dynamodb.update_item(
                    TableName=settings.messages_table,
                    Key={MESSAGE_KEY: item[MESSAGE_KEY]},
                    UpdateExpression="REMOVE #expires",
                    ConditionExpression="#status = :status AND attribute_not_exists(skipped_at)",
                    ExpressionAttributeNames={"#status": "status", "#expires": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":status": item["status"]},
                )
                result.cleared += 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                result.changed_meanwhile += 1
        if progress is not None:
            progress(result)
    return result


def _failed_message(
    dynamodb: DynamoDBClient, settings: Settings, message_id: str, *, for_requeue: bool = False
) -> MessageRecord:
    if not is_issued_message_id(message_id):
        raise MessageNotFound(message_id)  # no such id is ever issued (and DynamoDB refuses long keys)
    message = read_message(dynamodb, settings.messages_table, message_id)
    if message is None:
        if for_requeue and _orphaned_parked_entry(dynamodb, settings, message_id) is not None:
            raise MessageGone(
                "message_gone",
                f"message {message_id} is gone (its payload with it) and cannot be sent again; only its "
                f"parked entry is left: `outbox skip {message_id}` drops it so its FIFO group moves on",
                "message_id",
            )
        raise MessageNotFound(message_id)
    if message.status != Status.FAILED:
        raise NotFailed("not_failed", f"message {message_id} is {message.status}, not FAILED", "message_id")
    return message


def _entry_of(message: MessageRecord) -> tuple[str, str, dict[str, AttributeValueTypeDef]]:
    """The shard, id and key of the message's outbox entry, which every message item names."""
    key = message.entry_key
    if message.shard is None or message.entry_id is None or key is None:
        raise InvalidRequest(
            "no_entry", f"message {message.message_id} names no outbox entry (shard, entry_id)", "message_id"
        )
    return message.shard, message.entry_id, key


def _transact(dynamodb: DynamoDBClient, items: list[TransactWriteItemTypeDef], message_id: str) -> None:
    """Run an operator's transaction. A cancellation by a failed condition means the message or its entry
    changed since this command read them: reported as `changed_concurrently`, to look again. One caused
    only by a conflict or throttling is sent again first (`CONFLICT_RETRY`, a new request token each time),
    and reported the same way if it keeps happening. Other errors propagate."""
    try:
        CONFLICT_RETRY.run(dynamodb, items, retry_if=_only_conflicted)
    except TransactionCancelled as cancelled:
        raise NotFailed(
            "changed_concurrently",
            f"message {message_id} changed while this ran; look again",
            "message_id",
        ) from cancelled


def _only_conflicted(cancelled: TransactionCancelled) -> bool:
    """No condition failed, and something a retry can get past did: nothing the command read has changed."""
    return cancelled.retryable and not cancelled.failed_conditions

"""The dead-letter queue from the outbox's side: `dlq list` marks what it finds there DEAD_LETTERED, and
`dlq redrive` sends a message again **through the outbox** (a new entry, the same `message_id`), so its
status, the relay's metrics and the FIFO rules apply to it, with a redrive count and the time of each
redrive kept on the message (ADR 0020). Both are operator commands: audited, each write conditional.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from outbox.core.domain import Status, epoch_millis, iso, new_time_ordered_id, utc_now
from outbox.core.errors import InvalidRequest
from outbox.core.schema import MESSAGE_KEY, TTL_ATTRIBUTE
from outbox.core.settings import FIFO_DEDUPLICATION_SECONDS
from outbox.data.messages import MessageRecord, read_message
from outbox.data.transact import TransactionCancelled, transact
from outbox.ops.transactions import new_entry_action

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_sqs import SQSClient

    from outbox.core.settings import Settings

logger = Logger(service="outbox-admin", logger_handler=logging.StreamHandler(sys.stderr))

PEEK_VISIBILITY_SECONDS: Final = 30
"""While a command reads the DLQ, what it read stays hidden (so one pass never reads a message twice);
when it is done, what it leaves in the queue is made visible again at once."""
MARKABLE: Final = (Status.PENDING, Status.QUEUED, Status.PROCESSING)
"""A message found in the DLQ is marked DEAD_LETTERED from these (PENDING: delivered before the relay's
finalize). Never from COMPLETED: a completed message's copy in the DLQ is only a copy."""
REDRIVABLE: Final = (Status.QUEUED, Status.PROCESSING, Status.DEAD_LETTERED)
"""Not PENDING (its entry will send it anyway) nor FAILED (`requeue` is for that)."""


class NotRedrivable(InvalidRequest):
    """The message cannot be sent again from the DLQ now; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message in the DLQ, and its message item as the command left it."""

    message_id: str | None
    """None: an SQS message without our `message_id` attribute (not sent by the relay)."""
    receive_count: int
    sent_at: str | None
    receipt_handle: str = ""
    record: MessageRecord | None = field(default=None, repr=False, compare=False)
    """The message item as this command left it (None: no such message in the table)."""

    @property
    def status(self) -> str | None:
        return self.record.status if self.record is not None else None

    @property
    def last_error(self) -> str | None:
        return self.record.last_error if self.record is not None else None


@dataclass(frozen=True, slots=True)
class Redriven:
    message_id: str
    outcome: str
    """`redriven` (PENDING with a new entry; the DLQ copy deleted), `already_completed` (the copy deleted,
    nothing sent) or `left_alone` (see `reason`)."""
    reason: str = ""
    redrive_count: int = 0


def dead_letters(
    *,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    settings: Settings,
    dlq_url: str,
    limit: int,
    now: datetime | None = None,
    peek_seconds: int = PEEK_VISIBILITY_SECONDS,
    keep_hidden: bool = False,
) -> list[DeadLetter]:
    """Up to `limit` messages of the DLQ, each one's message marked DEAD_LETTERED (with the DLQ's receive
    count) if it was still on its way. They are visible again when this returns, unless `keep_hidden`
    (the caller then deletes or `release`s each)."""
    moment = now or utc_now()
    found: list[DeadLetter] = []
    seen: set[str] = set()
    while len(found) < limit:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(10, limit - len(found)),
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=peek_seconds,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [message for message in batch if message["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            found.append(_marked(dict(message), dynamodb=dynamodb, settings=settings, now=moment))
    if not keep_hidden:
        release(sqs, dlq_url, found)
    return found


def release(sqs: SQSClient, dlq_url: str, letters: list[DeadLetter]) -> None:
    """Make messages read from the DLQ visible again now (not after the peek)."""
    for start in range(0, len(letters), 10):
        chunk = letters[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
                for i, letter in enumerate(chunk)
            ],
        )


def redrive(
    message_ids: set[str] | None,
    *,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    settings: Settings,
    dlq_url: str,
    actor: str,
    limit: int = 1000,
    now: datetime | None = None,
    peek_seconds: int = PEEK_VISIBILITY_SECONDS,
) -> list[Redriven]:
    """Send the DLQ's messages (those of `message_ids`, or all with None) again through the outbox: the
    message DEAD_LETTERED → PENDING with one more redrive and a new entry, in one transaction; then the DLQ
    copy is deleted. A message already COMPLETED only loses its copy. Anything else is left alone, with
    the reason; so is a FIFO message queued less than SQS's 5-minute deduplication interval ago, which
    SQS would silently drop as a duplicate of its first send."""
    moment = now or utc_now()
    results: list[Redriven] = []
    letters = dead_letters(
        sqs=sqs,
        dynamodb=dynamodb,
        settings=settings,
        dlq_url=dlq_url,
        limit=limit,
        now=moment,
        peek_seconds=peek_seconds,
        keep_hidden=True,
    )
    untouched: list[DeadLetter] = []
    for letter in letters:
        if letter.message_id is None or (message_ids is not None and letter.message_id not in message_ids):
            untouched.append(letter)
            continue
        result = _redrive_one(letter, dynamodb=dynamodb, settings=settings, actor=actor, now=moment)
        if result.outcome == "left_alone":
            untouched.append(letter)
        else:
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
        results.append(result)
    release(sqs, dlq_url, untouched)
    if message_ids is not None:
        found = {result.message_id for result in results}
        results += [
            Redriven(missing, "left_alone", "not found in the dead-letter queue")
            for missing in sorted(message_ids - found)
        ]
    return results


def _marked(
    message: dict[str, Any], *, dynamodb: DynamoDBClient, settings: Settings, now: datetime
) -> DeadLetter:
    attributes = message.get("Attributes", {})
    message_id = message.get("MessageAttributes", {}).get("message_id", {}).get("StringValue")
    receive_count = int(attributes.get("ApproximateReceiveCount", "0"))
    sent = attributes.get("SentTimestamp")
    sent_at = iso(datetime.fromtimestamp(int(sent) / 1000, tz=now.tzinfo)) if sent else None
    record = read_message(dynamodb, settings.messages_table, message_id) if message_id else None
    if record is not None and record.status in MARKABLE:
        if _mark_dead_lettered(dynamodb, settings, record, receive_count=receive_count, now=now):
            record = replace(record, status=Status.DEAD_LETTERED, dead_lettered_at=iso(now))
        else:  # it moved on meanwhile: show it as it is now
            record = read_message(dynamodb, settings.messages_table, record.message_id)
    return DeadLetter(
        message_id=message_id,
        receive_count=receive_count,
        sent_at=sent_at,
        receipt_handle=str(message["ReceiptHandle"]),
        record=record,
    )


def _mark_dead_lettered(
    dynamodb: DynamoDBClient, settings: Settings, record: MessageRecord, *, receive_count: int, now: datetime
) -> bool:
    """→ DEAD_LETTERED, conditional on the status read; a message that moved on meanwhile is left as it is
    (False). It keeps (or gets back) a TTL-free life while it waits for an operator: still owed."""
    try:
        dynamodb.update_item(
            TableName=settings.messages_table,
            Key={MESSAGE_KEY: {"S": record.message_id}},
            UpdateExpression=(
                "SET #status = :dead, dead_lettered_at = :now, updated_at = :now, dlq_receive_count = :count "
                "REMOVE processing_token, processing_until, #expires"
            ),
            ConditionExpression="#status = :read",
            ExpressionAttributeNames={"#status": "status", "#expires": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":dead": {"S": Status.DEAD_LETTERED},
                ":read": {"S": record.status},
                ":now": {"S": iso(now)},
                ":count": {"N": str(receive_count)},
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _redrive_one(
    letter: DeadLetter, *, dynamodb: DynamoDBClient, settings: Settings, actor: str, now: datetime
) -> Redriven:
    message_id = letter.message_id or ""
    record = letter.record  # as `dead_letters` just read (and marked) it: the redrive is conditional on it
    if record is not None and record.status == Status.COMPLETED:
        return Redriven(message_id, "already_completed")
    reason = _not_redrivable(record, settings, now)
    if record is None or record.shard is None or reason:
        return Redriven(message_id, "left_alone", reason)
    entry_id = new_time_ordered_id(epoch_millis(now))
    items: list[TransactWriteItemTypeDef] = [
        _redrive_message_action(settings.messages_table, record, entry_id=entry_id, actor=actor, now=now),
        new_entry_action(
            outbox_table=settings.outbox_table, message=record, shard=record.shard, entry_id=entry_id, now=now
        ),
    ]
    try:
        transact(dynamodb, items)
    except TransactionCancelled:
        return Redriven(message_id, "left_alone", "it changed while this ran; look again")
    logger.info("message redriven from the dead-letter queue", message_id=message_id, actor=actor)
    # The transaction's condition held the status it read, so the count it added to is the one read.
    return Redriven(message_id, "redriven", redrive_count=record.redrive_count + 1)


def _not_redrivable(record: MessageRecord | None, settings: Settings, now: datetime) -> str:
    """Why the message cannot be sent again now ("" when it can)."""
    if record is None:
        return "no such message in the Messages table (expired or deleted)"
    if record.status not in REDRIVABLE:
        what = "requeue it with `outbox requeue`" if record.status == Status.FAILED else "the relay owes it"
        return f"it is {record.status}: {what}"
    if record.shard is None:
        return "the message names no outbox shard"
    if settings.fifo and record.queued_at is not None:
        ready = _parsed(record.queued_at) + timedelta(seconds=FIFO_DEDUPLICATION_SECONDS)
        if now < ready:
            return f"FIFO: SQS would drop a send before {iso(ready)} as a duplicate (5-minute deduplication)"
    return ""


def _redrive_message_action(
    table: str, record: MessageRecord, *, entry_id: str, actor: str, now: datetime
) -> TransactWriteItemTypeDef:
    """→ PENDING with a new entry, one more redrive, its time appended to the message's lineage, and who
    did it; owed again, so no TTL. Conditional on the status read."""
    stamp = iso(now)
    return {
        "Update": {
            "TableName": table,
            "Key": {MESSAGE_KEY: {"S": record.message_id}},
            "UpdateExpression": (
                "SET #status = :pending, updated_at = :now, entry_id = :entry, redriven_by = :actor, "
                "redriven_at = list_append(if_not_exists(redriven_at, :empty), :stamp), attempts = :zero "
                "REMOVE processing_token, processing_until, #expires ADD redrive_count :one"
            ),
            "ConditionExpression": "#status = :read",
            "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":pending": {"S": Status.PENDING},
                ":read": {"S": record.status},
                ":now": {"S": stamp},
                ":entry": {"S": entry_id},
                ":actor": {"S": actor},
                ":empty": {"L": []},
                ":stamp": {"L": [{"S": stamp}]},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
            },
        }
    }


def _parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

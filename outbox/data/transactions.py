"""The ingest transaction, built as data (docs/design.md §3.3).

`prepare_message` turns a checked request into a `NewMessage`; `place_payload` decides whether its payload
rides in the message item, is stored apart in the Payloads table, or goes to S3 (ADR 0023);
`transaction_items` renders it as the two `TransactWriteItems` actions (message Put + outbox entry Put) in
DynamoDB's low-level form, ready to be appended to a caller's own transaction next to its business writes,
and `payload_put_item` the payload's own item, to be written before them (an S3 object, `payload_object`,
likewise). Nothing here talks to AWS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from outbox.core.domain import (
    ANONYMOUS,
    EntryState,
    Status,
    epoch_millis,
    iso,
    keyed_message_id,
    new_time_ordered_id,
    request_hash,
    shard_for,
    utc_now,
)
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY
from outbox.core.settings import Settings
from outbox.core.tracing import valid_xray_header
from outbox.core.validation import MessageRequest, travels_through_s3
from outbox.data.claim_check import PayloadObject, object_key
from outbox.data.payloads import payload_expiry, payload_item, stays_inline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

CLIENT_REQUEST_TOKEN_LENGTH: Final = 36
"""DynamoDB's limit for `ClientRequestToken` (moto does not check it)."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message about to be accepted, with its outbox entry's place fixed."""

    message_id: str
    request: MessageRequest
    principal: str
    request_hash: str
    shard: str
    entry_id: str
    created_at: datetime
    trace_header: str | None = None
    """The X-Ray trace header of the request that sent it (ADR 0021), relayed as `AWSTraceHeader`. Not part
    of the request hash: a replay under another trace is the same request."""
    payload_id: str | None = None
    """Set when the payload is stored apart (`place_payload`): the id of its item in the Payloads table,
    fresh for every request, so a refused replay's payload never overwrites the accepted one's."""
    payload_expires_at: int | None = None
    """The payload item's TTL (epoch seconds), when it is stored apart."""
    payload_object: PayloadObject | None = None
    """Set when the payload goes to S3 (`place_payload`): the object to write before the transaction, under
    a key made fresh for every request (`object_key` of a time-ordered id), for the reason `payload_id`
    is. Its expiry is the bucket's lifecycle rule, not an attribute."""

    @property
    def stored_apart(self) -> bool:
        """Whether the payload is written before the transaction (to S3 or the Payloads table)."""
        return self.payload_object is not None or self.payload_id is not None


def message_for(
    request: MessageRequest,
    *,
    settings: Settings,
    principal: str = ANONYMOUS,
    now: datetime | None = None,
    trace_header: str | None = None,
) -> NewMessage:
    """`prepare_message`, then `place_payload` as `settings` configure the payload's places: the one way
    ingest, the library and the benchmark build a message."""
    return place_payload(
        prepare_message(
            request, shards=settings.outbox_shards, principal=principal, now=now, trace_header=trace_header
        ),
        payloads_table=settings.payloads_table,
        retention_days=settings.retention_days,
        payloads_bucket=settings.payloads_bucket,
    )


def prepare_message(
    request: MessageRequest,
    *,
    shards: int,
    principal: str = ANONYMOUS,
    now: datetime | None = None,
    trace_header: str | None = None,
) -> NewMessage:
    """Give a checked request its ids and placement. A keyed request gets the same `message_id` every
    time; the entry id is made now, so the entry's place in its shard follows the order of acceptance."""
    created_at = now or utc_now()
    if request.idempotency_key is not None:
        message_id = keyed_message_id(principal, request.idempotency_key)
    else:
        message_id = new_time_ordered_id()
    return NewMessage(
        message_id=message_id,
        request=request,
        principal=principal,
        request_hash=request_hash(request.payload_json, request.attributes, request.group_id),
        shard=shard_for(request.group_id or message_id, shards),
        entry_id=new_time_ordered_id(epoch_millis(created_at)),
        created_at=created_at,
        trace_header=valid_xray_header(trace_header),
    )


def place_payload(
    message: NewMessage,
    *,
    payloads_table: str | None,
    retention_days: int,
    payloads_bucket: str | None = None,
) -> NewMessage:
    """Where the message's payload is kept (ADR 0023):

    * in S3, when a bucket is configured and the payload is above what an item holds
      (`outbox.core.validation.travels_through_s3`, the rule validation applied);
    * in the Payloads table, when one is configured and the message item would not fit one write unit
      with it (`outbox.data.payloads.stays_inline`);
    * otherwise in the message item: the message is returned unchanged."""
    payload_json = message.request.payload_json
    if payloads_bucket is not None and travels_through_s3(len(payload_json), claim_check=True):
        payload_id = new_time_ordered_id(epoch_millis(message.created_at))
        size = len(payload_json.encode("utf-8"))
        return dataclasses.replace(
            message, payload_object=PayloadObject(payloads_bucket, object_key(payload_id), size)
        )
    if payloads_table is None or stays_inline(message_item(message)):
        return message
    return dataclasses.replace(
        message,
        payload_id=new_time_ordered_id(epoch_millis(message.created_at)),
        payload_expires_at=payload_expiry(message.created_at, retention_days=retention_days),
    )


def payload_put_item(message: NewMessage) -> dict[str, AttributeValueTypeDef] | None:
    """The payload's own item, to `PutItem` before the transaction; None when the payload is inline."""
    if message.payload_id is None or message.payload_expires_at is None:
        return None
    return payload_item(
        message.payload_id, message.request.payload_json, expires_at=message.payload_expires_at
    )


def transaction_items(
    message: NewMessage, *, messages_table: str, outbox_table: str
) -> list[TransactWriteItemTypeDef]:
    """The message Put (only if the id is new, returning the old item if not) and the entry Put."""
    return [
        {
            "Put": {
                "TableName": messages_table,
                "Item": message_item(message),
                "ConditionExpression": "attribute_not_exists(#id)",
                "ExpressionAttributeNames": {"#id": MESSAGE_KEY},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Put": {
                "TableName": outbox_table,
                "Item": entry_item(message),
                "ConditionExpression": "attribute_not_exists(#entry)",
                "ExpressionAttributeNames": {"#entry": OUTBOX_SORT_KEY},
            }
        },
    ]


def message_item(message: NewMessage) -> dict[str, AttributeValueTypeDef]:
    """The message as accepted: `PENDING`, and without a TTL. It is owed to the queue until it is QUEUED,
    so nothing may expire it before then; the relay's finalize starts its retention (ADR 0003). Its
    payload is in it, or named by `payload_ref` when stored apart (ADR 0023): the id of its Payloads item,
    or the `s3://bucket/key` URI of its S3 object, with the object's size in bytes as `payload_size` (the
    relay's pointer announces it; nothing downloads the object to send it)."""
    request = message.request
    created = iso(message.created_at)
    item: dict[str, AttributeValueTypeDef] = {
        MESSAGE_KEY: {"S": message.message_id},
        "status": {"S": Status.PENDING},
        "attributes": {"M": {name: {"S": value} for name, value in request.attributes.items()}},
        "principal": {"S": message.principal},
        "request_hash": {"S": message.request_hash},
        "created_at": {"S": created},
        "updated_at": {"S": created},
        "attempts": {"N": "0"},
        "shard": {"S": message.shard},
        "entry_id": {"S": message.entry_id},
    }
    if message.payload_object is not None:
        item["payload_ref"] = {"S": message.payload_object.uri}
        item["payload_size"] = {"N": str(message.payload_object.size)}
    elif message.payload_id is not None:
        item["payload_ref"] = {"S": message.payload_id}
    else:
        item["payload"] = {"S": request.payload_json}
    if request.group_id is not None:
        item["group_id"] = {"S": request.group_id}
    if request.idempotency_key is not None:
        item["idempotency_key"] = {"S": request.idempotency_key}
    if message.trace_header is not None:
        item["trace_header"] = {"S": message.trace_header}
    return item


def entry_item(message: NewMessage) -> dict[str, AttributeValueTypeDef]:
    """The new message's outbox entry, due at once."""
    return ready_entry_item(
        shard=message.shard,
        entry_id=message.entry_id,
        message_id=message.message_id,
        group_id=message.request.group_id,
        due_ms=epoch_millis(message.created_at),
    )


def ready_entry_item(
    *, shard: str, entry_id: str, message_id: str, group_id: str | None, due_ms: int
) -> dict[str, AttributeValueTypeDef]:
    """An outbox entry READY to be claimed from `due_ms` (epoch milliseconds), no attempts made: the one
    shape ingest writes for a new message and `requeue` for a message whose parked entry was skipped.
    Small on purpose (no payload), since every claim rewrites it."""
    item: dict[str, AttributeValueTypeDef] = {
        OUTBOX_PARTITION_KEY: {"S": shard},
        OUTBOX_SORT_KEY: {"S": entry_id},
        MESSAGE_KEY: {"S": message_id},
        "state": {"S": EntryState.READY},
        "attempts": {"N": "0"},
        "next_attempt_at": {"N": str(due_ms)},
    }
    if group_id is not None:
        item["group_id"] = {"S": group_id}
    return item


def client_request_token(items: Sequence[Mapping[str, object]], attempt: int = 1) -> str:
    """A token made from the transaction's own items and the number of the attempt that sends them.

    Every send of one attempt carries the same token, so botocore's resend after a lost response or a 5xx
    is idempotent on DynamoDB. A new attempt after a cancellation gets a new token: DynamoDB documents a
    token as standing, for 10 minutes, for the outcome of the first request that used it, and does not
    promise that a cancelled one is run again under it (ADR 0003). A rebuilt request (new timestamps) gets
    a new token too, and is decided by the conditions. Attempt 1's token is the items' hash alone.
    """
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), default=str)
    if attempt != 1:
        canonical += f"\nattempt {attempt}"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:CLIENT_REQUEST_TOKEN_LENGTH]

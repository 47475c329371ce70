"""Payloads stored apart from their message (ADR 0023).

DynamoDB bills a write on the larger of the item before and after it, so a payload inside the message item
is paid for again at every status change (`PENDING → QUEUED → PROCESSING → COMPLETED`). A message item
that would exceed one write unit (1 KB) with its payload keeps it apart instead: in the Payloads table, an
item written once with a plain `PutItem` (half the price of a transactional write) under a fresh id that
the message item names (`payload_ref`), *before* the transaction that writes the message. If that
transaction never commits (a crash, a refused replay, a 409), the payload item is an orphan nobody names,
and its TTL removes it. Nothing ever updates a payload item: not the relay, not the consumer helper, not an
operator command.

Its TTL is set once, at acceptance: `PAYLOAD_GRACE_DAYS` past the message's retention, which covers the
longest a message lives in the normal flow (queued, its retention, the queue's and the DLQ's 14 days each).
A message kept beyond that (parked as FAILED for weeks, redriven late) may find its payload gone; the relay
then parks it as FAILED saying so, and never sends an empty message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from outbox.core.schema import PAYLOAD_GRACE_DAYS, PAYLOAD_KEY, TTL_ATTRIBUTE
from outbox.data.item_size import item_size
from outbox.data.messages import batch_get_items

__all__ = [
    "INLINE_ITEM_LIMIT_BYTES",
    "PAYLOAD_GRACE_DAYS",
    "batch_get_payloads",
    "payload_expiry",
    "payload_item",
    "put_payload",
    "read_payload",
    "stays_inline",
]

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

INLINE_ITEM_LIMIT_BYTES: Final = 1024
"""A message item up to one write unit keeps its payload: apart, it would cost a `PutItem` (1 unit) on top
of a transactional message write that costs 2 units anyway. Above it, each status change saves twice the
payload's units, and ingest saves half of them (ADR 0023 has the arithmetic)."""


def stays_inline(message_item: Mapping[str, AttributeValueTypeDef]) -> bool:
    """Whether a message item holding its payload fits in one write unit (then the payload stays in it)."""
    return item_size(message_item) <= INLINE_ITEM_LIMIT_BYTES


def payload_expiry(created_at: datetime, *, retention_days: int) -> int:
    """Epoch seconds at which the payload item of a message accepted at `created_at` expires."""
    return int((created_at + timedelta(days=retention_days + PAYLOAD_GRACE_DAYS)).timestamp())


def payload_item(payload_id: str, payload_json: str, *, expires_at: int) -> dict[str, AttributeValueTypeDef]:
    """The payload's item: its id, the exact JSON text as accepted, and its TTL."""
    return {
        PAYLOAD_KEY: {"S": payload_id},
        "payload": {"S": payload_json},
        TTL_ATTRIBUTE: {"N": str(expires_at)},
    }


def put_payload(client: DynamoDBClient, table: str, item: Mapping[str, AttributeValueTypeDef]) -> None:
    """Write a payload item, unconditionally: its id is fresh, so a resend after a lost response writes
    the same item again. DynamoDB's errors propagate."""
    client.put_item(TableName=table, Item=dict(item))


def read_payload(client: DynamoDBClient, table: str, payload_id: str) -> str | None:
    """A payload, read consistently; None when its item is gone (expired or deleted)."""
    item = client.get_item(TableName=table, Key={PAYLOAD_KEY: {"S": payload_id}}, ConsistentRead=True).get(
        "Item"
    )
    return str(item["payload"]["S"]) if item is not None else None


def batch_get_payloads(
    client: DynamoDBClient,
    table: str,
    payload_ids: Sequence[str],
    *,
    seconds_left: Callable[[], float] = lambda: float("inf"),
    on_call: Callable[[], None] = lambda: None,
) -> dict[str, str]:
    """The payloads of `payload_ids` that exist, by id, read consistently (`batch_get_items`): the relay's
    second read of a batch, after the message items that name them."""
    items: dict[str, dict[str, Any]] = batch_get_items(
        client,
        table,
        PAYLOAD_KEY,
        payload_ids,
        projection=f"{PAYLOAD_KEY}, payload",
        seconds_left=seconds_left,
        on_call=on_call,
    )
    return {payload_id: str(item["payload"]["S"]) for payload_id, item in items.items()}

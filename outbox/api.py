"""The library API: put a message into the outbox from your own code.

`outbox_write` gives the two transaction actions for a message, to append to **your own**
`TransactWriteItems` next to your business writes, so both commit or neither does. `enqueue` runs them
alone. Both check the message as the HTTP API does and raise `InvalidRequest` before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from outbox.clients import dynamodb_client
from outbox.domain import ANONYMOUS
from outbox.service import Accepted, accept
from outbox.settings import Settings
from outbox.store import MessageStore
from outbox.transactions import prepare_message, transaction_items
from outbox.validation import validate_message

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """The id the message will have and the actions that write it (message Put, then entry Put).

    If your transaction is cancelled with `ConditionalCheckFailed` on the message Put, a message with this
    id exists already: with an idempotency key, that is your earlier, committed request.
    """

    message_id: str
    items: list[TransactWriteItemTypeDef]


def outbox_write(
    payload: object,
    *,
    settings: Settings,
    attributes: dict[str, str] | None = None,
    group_id: str | None = None,
    idempotency_key: str | None = None,
    principal: str = ANONYMOUS,
    now: datetime | None = None,
) -> OutboxWrite:
    """Check a message and return its transaction actions, in DynamoDB's low-level form."""
    request = validate_message(
        payload,
        attributes=attributes,
        group_id=group_id,
        idempotency_key=idempotency_key,
        fifo=settings.fifo,
        max_payload_bytes=settings.max_payload_bytes,
    )
    message = prepare_message(
        request,
        shards=settings.outbox_shards,
        retention_days=settings.retention_days,
        principal=principal,
        now=now,
    )
    items = transaction_items(
        message, messages_table=settings.messages_table, outbox_table=settings.outbox_table
    )
    return OutboxWrite(message.message_id, items)


def enqueue(
    payload: object,
    *,
    settings: Settings,
    client: DynamoDBClient | None = None,
    attributes: dict[str, str] | None = None,
    group_id: str | None = None,
    idempotency_key: str | None = None,
    principal: str = ANONYMOUS,
) -> Accepted:
    """Accept one message in a transaction of its own, with the HTTP API's idempotency rules."""
    request = validate_message(
        payload,
        attributes=attributes,
        group_id=group_id,
        idempotency_key=idempotency_key,
        fifo=settings.fifo,
        max_payload_bytes=settings.max_payload_bytes,
    )
    store = MessageStore(client or dynamodb_client(), settings.messages_table)
    return accept(request, store=store, settings=settings, principal=principal)

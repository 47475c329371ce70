"""The library API: put a message into the outbox from your own code.

`outbox_write` gives the two transaction actions for a message, to append to **your own**
`TransactWriteItems` next to your business writes, so both commit or neither does. `enqueue` runs them
alone. Both check the message as the HTTP API does and raise `InvalidRequest` before anything is written.

Numbers in a payload reach the consumer with exactly their value: pass a `decimal.Decimal` for a number
that must keep every digit (`Decimal("12345678901234567890.12")` is sent as written), an `int` for a whole
number (up to Python's int digit limit, 4300 digits by default; a longer one is refused: pass a `Decimal`).
A `float` is sent as its shortest round-tripping repr, the text `repr()` prints: `0.1` for the double
nearest 0.1, which a consumer reads back as the same double, not its exact binary value
`0.1000000000000000055511151231257827`. NaN and Infinity are refused, as float or Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from outbox.core.clients import dynamodb_client, s3_client
from outbox.core.domain import ANONYMOUS
from outbox.core.settings import Settings
from outbox.core.tracing import request_trace
from outbox.core.validation import validate_message
from outbox.data.cancellation import CancellationExplanation, explain_cancellation
from outbox.data.store import MessageStore
from outbox.data.transactions import message_for, transaction_items
from outbox.ingest.service import Accepted, accept, write_payload

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """The id the message will have and the actions that write it (message Put, then entry Put).

    If your transaction is cancelled, `explain(exc, items)` says whether the outbox's items caused it:
    a replay of your earlier committed request (same idempotency key, same request), an idempotency
    conflict, a conflict to retry, or only your own items failing (`outbox.data.cancellation`).
    """

    message_id: str
    items: list[TransactWriteItemTypeDef]

    @property
    def idempotency_key(self) -> str | None:
        """The key the message was written with (None without one), as its message Put stores it."""
        return _stored_string(self, "idempotency_key")

    @property
    def request_hash(self) -> str | None:
        """The hash that tells a replay of this request from a different request under the same key."""
        return _stored_string(self, "request_hash")

    def explain(
        self,
        error: ClientError | Mapping[str, Any] | Sequence[Any],
        transact_items: Sequence[object] | None = None,
        *,
        offset: int | None = None,
    ) -> CancellationExplanation:
        """Why the transaction holding these items was cancelled: `explain_cancellation(error,
        transact_items, self, offset=offset)`. Pass the `TransactItems` list you sent (this write's items
        are found in it), or `offset=`, the index where `items` start in it."""
        return explain_cancellation(error, transact_items, self, offset=offset)


def _stored_string(write: OutboxWrite, name: str) -> str | None:
    put = write.items[0].get("Put") if write.items else None
    value = put["Item"].get(name) if put is not None else None
    text = value.get("S") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else None


def outbox_write(
    payload: object,
    *,
    settings: Settings,
    attributes: dict[str, str] | None = None,
    group_id: str | None = None,
    idempotency_key: str | None = None,
    principal: str = ANONYMOUS,
    now: datetime | None = None,
    trace_header: str | None = None,
    client: DynamoDBClient | None = None,
    s3: S3Client | None = None,
) -> OutboxWrite:
    """Check a message and return its transaction actions, in DynamoDB's low-level form.

    `payload`: None, bool, str, int, float, `decimal.Decimal`, and lists and str-keyed dicts of these;
    its numbers are written exactly as the module docstring says (a float as its repr). `trace_header`:
    the X-Ray trace the message continues (ADR 0021); by default the Lambda invocation's own, if any.

    **One write happens here** when the payload is stored apart (ADR 0023), before this returns: with a
    payload bucket configured (`PAYLOADS_BUCKET`) and a payload above 350,000 bytes, a `PutObject` of it
    to S3 through `s3` (by default the outbox's client); otherwise, with a Payloads table configured
    (`PAYLOADS_TABLE`) and a message item that would not fit one write unit with its payload, a plain
    `PutItem` into the Payloads table through `client` (by default the outbox's). The actions name it; if
    your transaction never commits, it is an orphan nobody names, and it expires (the item's TTL, the
    bucket's lifecycle rule). Raises `StoreUnavailable` when that write fails (nothing else was written).
    """
    request = validate_message(
        payload,
        attributes=attributes,
        group_id=group_id,
        idempotency_key=idempotency_key,
        fifo=settings.fifo,
        max_payload_bytes=settings.max_payload_bytes,
        claim_check=settings.claim_check,
    )
    message = message_for(
        request,
        settings=settings,
        principal=principal,
        now=now,
        trace_header=trace_header or request_trace({}),
    )
    if message.stored_apart:
        write_payload(message, _store(settings, client, s3))  # no client is made for an inline payload
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
    trace_header: str | None = None,
    s3: S3Client | None = None,
) -> Accepted:
    """Accept one message in a transaction of its own, with the HTTP API's idempotency rules.

    `payload` as for `outbox_write` (numbers exact; a float as its repr). The idempotency check compares
    numbers by value: `Decimal("1.0")` and `Decimal("1.00")` under one key are a replay, `0.1` and
    `Decimal("0.1000000000000000055511151231257827")` a conflict. A payload stored apart is written
    first, as `outbox_write` says (`s3`: the S3 client for one above 350,000 bytes).
    """
    request = validate_message(
        payload,
        attributes=attributes,
        group_id=group_id,
        idempotency_key=idempotency_key,
        fifo=settings.fifo,
        max_payload_bytes=settings.max_payload_bytes,
        claim_check=settings.claim_check,
    )
    return accept(
        request,
        store=_store(settings, client, s3),
        settings=settings,
        principal=principal,
        trace_header=trace_header or request_trace({}),
    )


def _store(settings: Settings, client: DynamoDBClient | None, s3: S3Client | None) -> MessageStore:
    return MessageStore(
        client or dynamodb_client(),
        settings.messages_table,
        payloads_table=settings.payloads_table,
        s3=(lambda: s3) if s3 is not None else s3_client,
    )

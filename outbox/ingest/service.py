"""Accepting messages and answering status queries: the ingest core, free of HTTP and of Lambda."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outbox.core import exact_json
from outbox.core.domain import ANONYMOUS, Status, is_issued_message_id
from outbox.core.errors import IdempotencyConflict, MessageNotFound, StoreUnavailable
from outbox.core.settings import Settings
from outbox.core.validation import MessageRequest
from outbox.data.messages import MessageRecord
from outbox.data.store import MessageExists, MessageStore, PayloadMissing
from outbox.data.transactions import NewMessage, message_for, payload_put_item, transaction_items


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    status: Status
    replayed: bool
    """True when the request repeated an earlier one (same principal, key and request)."""


def accept(
    request: MessageRequest,
    *,
    store: MessageStore,
    settings: Settings,
    principal: str = ANONYMOUS,
    now: datetime | None = None,
    trace_header: str | None = None,
) -> Accepted:
    """Write the message and its outbox entry in one transaction, or recognise a replay.

    Same key and same request: the stored message answers (its current status). Same key, different
    request: `IdempotencyConflict`, and the stored message does not change. A payload stored apart (ADR
    0023), in the Payloads table or as an S3 object, is written first, under a fresh id: if the transaction
    is refused, it is an orphan that expires (the item's TTL, the bucket's lifecycle rule). If that write
    fails, `StoreUnavailable` and nothing was written.
    """
    message = message_for(request, settings=settings, principal=principal, now=now, trace_header=trace_header)
    write_payload(message, store)
    items = transaction_items(
        message, messages_table=settings.messages_table, outbox_table=settings.outbox_table
    )
    try:
        store.write_new(items)
    except MessageExists as exists:
        existing = exists.existing or store.get_message(message.message_id)
        if existing is None:
            # Mismatch reported but no item: the earlier write cannot have committed.
            raise StoreUnavailable("the message could not be written; retry", retryable=True) from None
        if existing.request_hash != message.request_hash:
            raise IdempotencyConflict(
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
                "Idempotency-Key",
            ) from None
        return Accepted(message.message_id, Status(existing.status), replayed=True)
    return Accepted(message.message_id, Status.PENDING, replayed=False)


def write_payload(message: NewMessage, store: MessageStore) -> None:
    """Write the payload where `place_payload` put it, if anywhere but the message item: the one write
    that precedes the transaction (ADR 0023). `StoreUnavailable` when it fails."""
    if message.payload_object is not None:
        store.put_payload_object(message.payload_object, message.request.payload_json)
    elif (item := payload_put_item(message)) is not None:
        store.put_payload(item)


def message_status(
    message_id: str, *, store: MessageStore, principal: str = ANONYMOUS, include_payload: bool = False
) -> dict[str, Any]:
    """The status record of a message the caller created; `MessageNotFound` for anyone else's, and for an
    id we never issue (checked first: DynamoDB refuses a key over 2,048 bytes with an error, not a miss)."""
    if not is_issued_message_id(message_id):
        raise MessageNotFound(message_id)
    message = store.get_message(message_id)
    if message is None or message.principal != principal:
        raise MessageNotFound(message_id)
    return status_of(message, store=store, include_payload=include_payload)


def status_of(
    message: MessageRecord, *, store: MessageStore, include_payload: bool = False
) -> dict[str, Any]:
    """`status_record` of a stored message, its payload read from wherever it is kept when asked for. A
    payload that is gone does not hide the status: the record says why in `payload_error`."""
    if not include_payload:
        return status_record(message)
    try:
        payload = store.payload_of(message)
    except PayloadMissing as missing:
        record = status_record(message, include_payload=True)
        record["payload_error"] = str(missing)  # the status still answers; the payload cannot
        return record
    return status_record(message, include_payload=True, payload=payload)


def status_record(
    message: MessageRecord, *, include_payload: bool = False, payload: str | None = None
) -> dict[str, Any]:
    """A stored message as the API (and `outbox status`) shows it: ISO-8601 UTC times, no payload unless
    asked for. `payload`: the payload's text when it is stored apart (`MessageStore.payload_of`); by
    default the one in the message item."""
    record: dict[str, Any] = {
        "message_id": message.message_id,
        "status": message.status,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "queued_at": message.queued_at,
        "last_error": message.last_error,
        "attempts": message.attempts,
    }
    if message.group_id is not None:
        record["group_id"] = message.group_id
    if message.trace_header is not None:
        record["trace_header"] = message.trace_header
    if message.receive_count:  # a consumer helper has claimed it (ADR 0019)
        record["processing_started_at"] = message.processing_started_at
        record["completed_at"] = message.completed_at
        record["receive_count"] = message.receive_count
    if message.dead_lettered_at is not None or message.redrive_count:  # `outbox dlq` (ADR 0020)
        record["dead_lettered_at"] = message.dead_lettered_at
        record["redrive_count"] = message.redrive_count
        record["redriven_at"] = list(message.redriven_at)
    if include_payload:
        # Numbers exactly as accepted.
        text = payload if payload is not None else message.payload
        record["payload"] = exact_json.loads(text) if text is not None else None
        record["attributes"] = dict(message.attributes)
    return record

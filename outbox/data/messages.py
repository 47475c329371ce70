"""Reading message items: `MessageRecord`, a stored message as plain values; `read_message`, one message;
and the bounded, consistent `BatchGetItem` loop the relay and `outbox stats` read messages with.

An item's DynamoDB form (`{"status": {"S": "PENDING"}}`) is read here, in `MessageRecord.from_item`, and
nowhere in the logic that decides what a message's state means.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from outbox.core.errors import StoreUnavailable
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BATCH_GET_LIMIT: Final = 100
UNPROCESSED_ROUNDS: Final = 5
"""BatchGetItem calls per chunk before keys DynamoDB keeps leaving unprocessed stop the batch."""
UNPROCESSED_FIRST_PAUSE_SECONDS: Final = 0.05
UNPROCESSED_MAX_PAUSE_SECONDS: Final = 1.0
SEND_PROJECTION: Final = (
    "message_id, #status, payload, payload_ref, payload_size, #attributes, group_id, trace_header"
)
"""What sending a message needs of it; the names behind `#status` and `#attributes` go with it."""


class ReadsUnprocessed(StoreUnavailable):
    """BatchGetItem kept leaving keys unprocessed (throttled) past its bound: retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message. A field its item does not carry (or a projected read did not ask for) is None,
    `attributes` empty and `attempts` 0."""

    message_id: str
    status: str
    """A `Status` value, as stored (a consumer may have moved it on)."""
    payload: str | None = None
    """The payload as accepted: exact JSON text (`outbox.core.exact_json`); None when it is stored apart
    (`payload_ref`)."""
    payload_ref: str | None = None
    """Where the payload is when it is stored apart (ADR 0023): the id of its item in the Payloads table,
    or the `s3://bucket/key` URI of its S3 object (`outbox.data.claim_check.is_object_uri`)."""
    payload_size: int | None = None
    """The S3 object's size in bytes, for a payload in S3 (what the relay's pointer announces)."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    principal: str | None = None
    request_hash: str | None = None
    idempotency_key: str | None = None
    shard: str | None = None
    entry_id: str | None = None
    """The message's current outbox entry (ingest's, or the one its last `requeue` wrote)."""
    attempts: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    queued_at: str | None = None
    last_error: str | None = None
    processing_started_at: str | None = None
    """The consumer side (`outbox.consumer`, ADR 0019): when the last claim started, when it completed,
    and how many deliveries a consumer helper has claimed."""
    completed_at: str | None = None
    receive_count: int = 0
    dead_lettered_at: str | None = None
    """`outbox dlq` (ADR 0020): when the message was found in the dead-letter queue, how often it was sent
    again through the outbox, and when."""
    redrive_count: int = 0
    redriven_at: tuple[str, ...] = ()
    trace_header: str | None = None
    """The X-Ray trace of the request that sent it (ADR 0021)."""

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> MessageRecord:
        """The message of an item in DynamoDB's low-level form (GetItem, BatchGetItem, an `ALL_OLD`)."""

        def text(name: str) -> str | None:
            value = item.get(name)
            return str(value["S"]) if value is not None else None

        return cls(
            message_id=str(item[MESSAGE_KEY]["S"]),
            status=str(item["status"]["S"]),
            payload=text("payload"),
            payload_ref=text("payload_ref"),
            payload_size=int(item["payload_size"]["N"]) if "payload_size" in item else None,
            attributes={
                name: str(value["S"]) for name, value in item.get("attributes", {}).get("M", {}).items()
            },
            group_id=text("group_id"),
            principal=text("principal"),
            request_hash=text("request_hash"),
            idempotency_key=text("idempotency_key"),
            shard=text("shard"),
            entry_id=text("entry_id"),
            attempts=int(item.get("attempts", {}).get("N", "0")),
            created_at=text("created_at"),
            updated_at=text("updated_at"),
            queued_at=text("queued_at"),
            last_error=text("last_error"),
            processing_started_at=text("processing_started_at"),
            completed_at=text("completed_at"),
            receive_count=int(item.get("receive_count", {}).get("N", "0")),
            dead_lettered_at=text("dead_lettered_at"),
            redrive_count=int(item.get("redrive_count", {}).get("N", "0")),
            redriven_at=tuple(str(value["S"]) for value in item.get("redriven_at", {}).get("L", [])),
            trace_header=text("trace_header"),
        )

    @property
    def entry_key(self) -> dict[str, AttributeValueTypeDef] | None:
        """The key of the message's outbox entry; None when the item names none."""
        if self.shard is None or self.entry_id is None:
            return None
        return {OUTBOX_PARTITION_KEY: {"S": self.shard}, OUTBOX_SORT_KEY: {"S": self.entry_id}}


def read_message(client: DynamoDBClient, messages_table: str, message_id: str) -> MessageRecord | None:
    """One message, read consistently; None when there is none. DynamoDB's errors propagate."""
    item = client.get_item(
        TableName=messages_table, Key={MESSAGE_KEY: {"S": message_id}}, ConsistentRead=True
    ).get("Item")
    return MessageRecord.from_item(item) if item is not None else None


def batch_get_messages(
    client: DynamoDBClient,
    messages_table: str,
    message_ids: Sequence[str],
    *,
    seconds_left: Callable[[], float] = lambda: float("inf"),
    on_call: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """The items (`SEND_PROJECTION`) of `message_ids` that exist, by message id, read consistently by
    `batch_get_items`."""
    return batch_get_items(
        client,
        messages_table,
        MESSAGE_KEY,
        message_ids,
        projection=SEND_PROJECTION,
        names={"#status": "status", "#attributes": "attributes"},
        seconds_left=seconds_left,
        on_call=on_call,
    )


def batch_get_items(
    client: DynamoDBClient,
    table: str,
    key_name: str,
    ids: Sequence[str],
    *,
    projection: str | None = None,
    names: Mapping[str, str] | None = None,
    seconds_left: Callable[[], float] = lambda: float("inf"),
    on_call: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """The items of `table` whose hash key `key_name` is one of `ids`, by id, read consistently in chunks
    of `BATCH_GET_LIMIT`; `on_call()` runs before each `BatchGetItem` call.

    Keys DynamoDB leaves unprocessed (throttling) are asked for again with backoff, at most
    `UNPROCESSED_ROUNDS` calls per chunk and never past `seconds_left()`; then `ReadsUnprocessed` is raised,
    so a caller stops like on any other AWS error rather than wait for ever."""
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), BATCH_GET_LIMIT):
        keys: list[dict[str, Any]] = [
            {key_name: {"S": one}} for one in unique[start : start + BATCH_GET_LIMIT]
        ]
        request_for_table: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
        if projection is not None:
            request_for_table["ProjectionExpression"] = projection
        if names:
            request_for_table["ExpressionAttributeNames"] = dict(names)
        request: dict[str, Any] = {table: request_for_table}
        for round_number in itertools.count():
            on_call()
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[item[key_name]["S"]] = dict(item)
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
            pause = min(UNPROCESSED_MAX_PAUSE_SECONDS, UNPROCESSED_FIRST_PAUSE_SECONDS * 2**round_number)
            if round_number + 1 >= UNPROCESSED_ROUNDS or seconds_left() < pause:
                left = len(request[table]["Keys"])
                raise ReadsUnprocessed(f"BatchGetItem left {left} key(s) unprocessed")
            time.sleep(pause)
    return found

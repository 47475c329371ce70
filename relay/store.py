"""The relay's DynamoDB side: read a shard, fetch payloads, finalize, roll back, poison (each write behind
the shard lease's `ConditionCheck`, ADR 0018); and the one S3 call it makes, the `HeadObject` that checks
a payload in S3 is there before a pointer to it is sent (ADR 0023).

Transactions are built as data (`relay.transactions`) and run by one method (`_transact`, through
`outbox.data.transact`), which counts the call and gives it its own request token; a cancellation arrives
as `TransactionCancelled`, one reason per action. Everything else about DynamoDB errors propagates as
`ClientError`/`BotoCoreError` for the relay's retry layer to judge.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from outbox.core.clients import s3_client
from outbox.core.schema import OUTBOX_PARTITION_KEY
from outbox.core.settings import Settings
from outbox.data.claim_check import PayloadObject, is_object_uri, object_problem
from outbox.data.messages import (
    BATCH_GET_LIMIT,
    UNPROCESSED_ROUNDS,
    MessageRecord,
    ReadsUnprocessed,
    batch_get_messages,
)
from outbox.data.payloads import batch_get_payloads
from outbox.data.transact import CONDITION_FAILED, TransactionCancelled, transact
from relay.entries import Entry
from relay.leases import LeaseLost
from relay.transactions import (
    delete_entry_action,
    fail_message_action,
    park_entry_action,
    queue_message_action,
    roll_back_entry_action,
)

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client

__all__ = [
    "BATCH_GET_LIMIT",
    "DEFAULT_RETENTION_DAYS",
    "MAX_TRANSACTION_ACTIONS",
    "UNPROCESSED_ROUNDS",
    "FinalizeResult",
    "OutboxStore",
    "PayloadUnavailable",
    "ReadsUnprocessed",
    "TransactionCancelled",
]

MAX_TRANSACTION_ACTIONS: Final = 100
DEFAULT_RETENTION_DAYS: Final = Settings.retention_days


class PayloadUnavailable(Exception):
    """A message's payload cannot be sent (a pointer to an S3 object that is not there, or whose size is
    not recorded): the message is parked saying why, never sent empty (ADR 0023)."""


@dataclass
class FinalizeResult:
    done: list[Entry] = field(default_factory=list)
    """Message QUEUED and entry deleted by this call."""
    already_moved: list[Entry] = field(default_factory=list)
    """The message was no longer PENDING (a finalize whose response was lost, or a consumer moved it)."""
    missing: list[Entry] = field(default_factory=list)
    retry: list[Entry] = field(default_factory=list)
    """Not decided: cancelled only because another action failed, or by a conflict."""
    lease_lost: bool = False
    """The lease's check failed: nothing was written, and this relay may finalize nothing more."""


class OutboxStore:
    def __init__(
        self,
        client: DynamoDBClient,
        *,
        messages_table: str,
        outbox_table: str,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        payloads_table: str | None = None,
        s3: Callable[[], S3Client] = s3_client,
    ) -> None:
        """`s3` makes the S3 client, called only when a batch holds a payload in S3."""
        self._client = client
        self._s3 = s3
        self._messages_table = messages_table
        self._payloads_table = payloads_table
        self._outbox_table = outbox_table
        self._retention = timedelta(days=retention_days)
        self._call_numbers = itertools.count(1)
        self.calls = 0

    # -- reading -----------------------------------------------------------------------------------

    def query_page(
        self, shard: str, start_key: dict[str, Any] | None, *, limit: int
    ) -> tuple[list[Entry], dict[str, Any] | None]:
        """One page of a shard, oldest entry first, read consistently."""
        arguments: dict[str, Any] = {
            "TableName": self._outbox_table,
            "KeyConditionExpression": "#shard = :shard",
            "ExpressionAttributeNames": {"#shard": OUTBOX_PARTITION_KEY},
            "ExpressionAttributeValues": {":shard": {"S": shard}},
            "ConsistentRead": True,
            "ScanIndexForward": True,
            "Limit": limit,
        }
        if start_key:
            arguments["ExclusiveStartKey"] = start_key
        self.calls += 1
        response = self._client.query(**arguments)
        entries = [Entry.from_item(item) for item in response.get("Items", [])]
        return entries, response.get("LastEvaluatedKey")

    def holds_unseen_due(self, shard: str, seen: Collection[str], *, now_ms: int, limit: int) -> bool:
        """Whether the shard holds a due READY entry that is not in `seen` (read consistently, page by
        page until one is found): the read after a lease's release that keeps a wake-up from being lost
        (ADR 0018). Entries seen but left (FIFO order, backoff) do not count: they are not news."""
        start_key: dict[str, Any] | None = None
        while True:
            page, start_key = self.query_page(shard, start_key, limit=limit)
            if any(entry.entry_id not in seen and entry.claimable(now_ms) for entry in page):
                return True
            if start_key is None:
                return False

    def fetch_messages(
        self,
        message_ids: Sequence[str],
        *,
        seconds_left: Callable[[], float] = lambda: float("inf"),
    ) -> dict[str, dict[str, Any]]:
        """The message items (status, payload, attributes, group) of a batch, read consistently by
        `outbox.data.messages.batch_get_messages`: bounded, `ReadsUnprocessed` when DynamoDB keeps
        leaving keys unprocessed (the batch then stops like on any other AWS error, its entries wait for
        the next pass). Each `BatchGetItem` call counts in `calls`. A payload stored apart (ADR 0023) is
        read in a second, consistent `BatchGetItem` of the Payloads table and set on its item; an item
        whose payload is not found comes back without one (`payload_problem` says why). A payload in S3
        is not read: its item keeps `payload_ref` and `payload_size` (`payload_object`)."""
        items = batch_get_messages(
            self._client,
            self._messages_table,
            message_ids,
            seconds_left=seconds_left,
            on_call=self._count_call,
        )
        apart = {
            item["payload_ref"]["S"]: item
            for item in items.values()
            if "payload_ref" in item and not is_object_uri(item["payload_ref"]["S"])
        }
        if apart and self._payloads_table is not None:
            payloads = batch_get_payloads(
                self._client,
                self._payloads_table,
                list(apart),
                seconds_left=seconds_left,
                on_call=self._count_call,
            )
            for payload_id, payload in payloads.items():
                apart[payload_id]["payload"] = {"S": payload}
        return items

    def payload_object(self, item: dict[str, Any]) -> PayloadObject | None:
        """The S3 object a message item fetched by `fetch_messages` keeps its payload in, checked with a
        `HeadObject` to be there, of the size recorded; None for an item whose payload is not in S3.

        The relay sends a pointer to the object, never the object (the consumer's extended client reads
        it), but a pointer to nothing is an empty message to that consumer: `PayloadUnavailable` (the
        message is parked) when the object is gone or unreadable (`claim_check.object_problem`), or its size
        was not recorded. A transient S3 error propagates, as botocore raises it, for the relay's retry
        layer: the batch stops and its entries wait, as after a failed read of DynamoDB."""
        ref = item.get("payload_ref", {}).get("S")
        if ref is None or not is_object_uri(ref):
            return None
        size = item.get("payload_size", {}).get("N")
        if size is None:
            raise PayloadUnavailable(f"its payload object {ref} has no recorded payload_size: not sent")
        try:
            obj = PayloadObject.from_uri(ref, int(size))
        except ValueError as bad:
            raise PayloadUnavailable(f"its payload_ref names no object: {bad}") from None
        if problem := object_problem(self._s3(), obj):
            raise PayloadUnavailable(problem)
        return obj

    def payload_problem(self, item: dict[str, Any]) -> str:
        """Why a message item fetched by `fetch_messages` came without its payload (ADR 0023)."""
        ref = item.get("payload_ref", {}).get("S")
        if ref is None:
            return "the message item holds no payload"
        if self._payloads_table is None:
            return f"its payload {ref} is in the Payloads table, and PAYLOADS_TABLE is not set"
        return f"its payload {ref} is gone from {self._payloads_table} (expired or deleted): not sent"

    def fetch_message_records(
        self,
        message_ids: Sequence[str],
        *,
        seconds_left: Callable[[], float] = lambda: float("inf"),
    ) -> dict[str, MessageRecord]:
        """`fetch_messages`, each message as a `MessageRecord`."""
        items = self.fetch_messages(message_ids, seconds_left=seconds_left)
        return {message_id: MessageRecord.from_item(item) for message_id, item in items.items()}

    # -- after sending, each write behind the lease's check -----------------------------------------

    def finalize(
        self, sent: Sequence[tuple[Entry, str]], *, check: TransactWriteItemTypeDef, now: datetime
    ) -> FinalizeResult:
        """One transaction: the lease's `check` (action 0), then each message PENDING→QUEUED and its entry
        deleted. The message's TTL starts here (now + retention): nothing is owed for it any more. A
        cancellation on the check means the lease is lost (`lease_lost`, nothing written); otherwise it is
        decided per message from its reasons (docs/design.md §4.4)."""
        result = FinalizeResult()
        if not sent:
            return result
        items: list[TransactWriteItemTypeDef] = [check]
        for entry, sqs_message_id in sent:
            items.append(
                queue_message_action(
                    entry,
                    sqs_message_id,
                    messages_table=self._messages_table,
                    now=now,
                    retention=self._retention,
                )
            )
            items.append(delete_entry_action(entry, outbox_table=self._outbox_table))
        try:
            self._transact(items)
        except TransactionCancelled as cancelled:
            if cancelled.code_at(0) == CONDITION_FAILED:
                result.lease_lost = True
                result.retry.extend(entry for entry, _ in sent)
                return result
            for index, (entry, _) in enumerate(sent):
                message_at = 1 + 2 * index
                if cancelled.code_at(message_at) == CONDITION_FAILED:
                    old = cancelled.old_item_at(message_at)
                    (result.already_moved if old else result.missing).append(entry)
                else:
                    result.retry.append(entry)
            return result
        result.done.extend(entry for entry, _ in sent)
        return result

    def delete_entries(self, entries: Sequence[Entry], *, check: TransactWriteItemTypeDef) -> None:
        """Delete entries whose message moved on or is gone, in one transaction behind the lease's
        `check`; `LeaseLost` when the lease is no longer ours (nothing deleted)."""
        if entries:
            self._fenced(
                check, [delete_entry_action(entry, outbox_table=self._outbox_table) for entry in entries]
            )

    def roll_back(
        self,
        entry: Entry,
        *,
        check: TransactWriteItemTypeDef,
        counted: bool,
        next_attempt_at_ms: int,
        error: str,
        sent_at_ms: int | None,
    ) -> bool:
        """A failed send given back with backoff, behind the lease's `check`; the message is not touched.
        False when the entry is no longer READY (removed meanwhile): nothing written. `LeaseLost` when the
        lease is no longer ours: nothing written."""
        action = roll_back_entry_action(
            entry,
            outbox_table=self._outbox_table,
            counted=counted,
            next_attempt_at_ms=next_attempt_at_ms,
            error=error,
            sent_at_ms=sent_at_ms,
        )
        return self._fenced(check, [action])

    def poison(
        self,
        entry: Entry,
        *,
        check: TransactWriteItemTypeDef,
        attempts: int,
        error: str,
        now: datetime,
        sent_at_ms: int | None,
    ) -> bool:
        """One transaction behind the lease's `check`: message PENDING→FAILED with the error, entry PARKED
        in its place (ADR 0007). The entry's count grows by one (`ADD`); `attempts` (the count as this
        relay knows it) is what the message records. A FAILED message is still owed (its entry is parked
        for `requeue`): no TTL. False when the message moved on or the entry is no longer READY: nothing
        written. `LeaseLost` when the lease is no longer ours."""
        items = [
            fail_message_action(
                entry, messages_table=self._messages_table, attempts=attempts, error=error, now=now
            ),
            park_entry_action(entry, outbox_table=self._outbox_table, error=error, sent_at_ms=sent_at_ms),
        ]
        return self._fenced(check, items)

    def _fenced(self, check: TransactWriteItemTypeDef, items: list[TransactWriteItemTypeDef]) -> bool:
        """`items` behind the lease's `check` (action 0). False when an item's condition failed; raises
        `LeaseLost` when the check did, and `TransactionCancelled` for anything worth another try."""
        try:
            self._transact([check, *items])
        except TransactionCancelled as cancelled:
            if cancelled.code_at(0) == CONDITION_FAILED:
                raise LeaseLost("the shard's lease is no longer ours") from None
            if cancelled.retryable:
                raise
            return False
        return True

    # -- one adapter for every transaction ---------------------------------------------------------

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> None:
        # A call number of its own for every call, hence a token of its own: botocore's resends of this
        # call (a lost response, a 5xx) reuse it, so DynamoDB applies the call once; a later call with the
        # same items (a retry after a cancellation) is not answered with a cancelled call's outcome
        # (ADR 0003).
        self._count_call()
        transact(self._client, items, call_number=next(self._call_numbers))

    def _count_call(self) -> None:
        self.calls += 1

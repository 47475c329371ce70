"""The relay's DynamoDB side: read a shard, claim, fetch payloads, finalize, roll back, poison.

Transactions are built as data (`relay.transactions`) and run by one method (`_transact`, through
`outbox.data.transact`), which counts the call and gives it its own request token; a cancellation arrives
as `TransactionCancelled`, one reason per action. Everything else about DynamoDB errors propagates as
`ClientError`/`BotoCoreError` for the relay's retry layer to judge.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from outbox.core.schema import OUTBOX_PARTITION_KEY
from outbox.core.settings import Settings
from outbox.data.messages import (
    BATCH_GET_LIMIT,
    UNPROCESSED_ROUNDS,
    MessageRecord,
    ReadsUnprocessed,
    batch_get_messages,
)
from outbox.data.transact import CONDITION_FAILED, TransactionCancelled, transact
from relay.entries import Entry
from relay.transactions import (
    MAX_ERROR_CHARACTERS,
    claim_action,
    delete_entry_action,
    fail_message_action,
    park_entry_action,
    queue_message_action,
)

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

__all__ = [
    "BATCH_GET_LIMIT",
    "DEFAULT_RETENTION_DAYS",
    "MAX_TRANSACTION_ACTIONS",
    "SKIP_REASONS",
    "UNPROCESSED_ROUNDS",
    "FinalizeResult",
    "OutboxStore",
    "ReadsUnprocessed",
    "TransactionCancelled",
]

MAX_TRANSACTION_ACTIONS: Final = 100
DEFAULT_RETENTION_DAYS: Final = Settings.retention_days
SKIP_REASONS: Final = frozenset({CONDITION_FAILED, "TransactionConflict"})
"""A claim action cancelled with one of these is refused (skip the entry); the others are tried again."""


class _StampNotOurs(Exception):
    """The claim is ours but `first_send_at` was set by an earlier claim."""


@dataclass
class FinalizeResult:
    done: list[Entry] = field(default_factory=list)
    """Message QUEUED and entry deleted by this call."""
    already_moved: list[Entry] = field(default_factory=list)
    """The message was no longer PENDING (a finalize whose response was lost, or a consumer moved it)."""
    missing: list[Entry] = field(default_factory=list)
    claim_lost: list[Entry] = field(default_factory=list)
    retry: list[Entry] = field(default_factory=list)
    """Not decided: cancelled only because another action failed, or by a conflict."""


class OutboxStore:
    def __init__(
        self,
        client: DynamoDBClient,
        *,
        messages_table: str,
        outbox_table: str,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._client = client
        self._messages_table = messages_table
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

    def fetch_messages(
        self,
        message_ids: Sequence[str],
        *,
        seconds_left: Callable[[], float] = lambda: float("inf"),
    ) -> dict[str, dict[str, Any]]:
        """The message items (status, payload, attributes, group) of a claim batch, read consistently by
        `outbox.data.messages.batch_get_messages`: bounded, `ReadsUnprocessed` when DynamoDB keeps
        leaving keys unprocessed (the batch then stops like on any other AWS error, its entries wait for
        their lease). Each `BatchGetItem` call counts in `calls`."""
        return batch_get_messages(
            self._client,
            self._messages_table,
            message_ids,
            seconds_left=seconds_left,
            on_call=self._count_call,
        )

    def fetch_message_records(
        self,
        message_ids: Sequence[str],
        *,
        seconds_left: Callable[[], float] = lambda: float("inf"),
    ) -> dict[str, MessageRecord]:
        """`fetch_messages`, each message as a `MessageRecord`."""
        items = self.fetch_messages(message_ids, seconds_left=seconds_left)
        return {message_id: MessageRecord.from_item(item) for message_id, item in items.items()}

    # -- claiming ----------------------------------------------------------------------------------

    def claim(
        self, entries: Sequence[Entry], *, token: str, now_ms: int, lease_until_ms: int
    ) -> tuple[list[Entry], list[Entry]]:
        """Claim entries in one transaction; returns (claimed, refused). An action cancelled because it
        failed its condition or conflicted is refused (skip it); the others are tried again without it."""
        pending = list(entries)
        refused: list[Entry] = []
        while pending:
            items = [
                claim_action(
                    entry,
                    outbox_table=self._outbox_table,
                    token=token,
                    now_ms=now_ms,
                    lease_until_ms=lease_until_ms,
                )
                for entry in pending
            ]
            try:
                self._transact(items)
            except TransactionCancelled as cancelled:
                failed = cancelled.failed_with(SKIP_REASONS)
                if not failed:
                    raise
                refused.extend(entry for i, entry in enumerate(pending) if i in failed)
                pending = [entry for i, entry in enumerate(pending) if i not in failed]
                continue
            return pending, refused
        return [], refused

    # -- after sending -----------------------------------------------------------------------------

    def finalize(self, sent: Sequence[tuple[Entry, str]], *, token: str, now: datetime) -> FinalizeResult:
        """One transaction: each message PENDING→QUEUED and its entry deleted while still ours. The message's
        TTL starts here (now + retention): nothing is owed for it any more. A cancellation is decided per
        message from its reasons (docs/design.md §4.4)."""
        result = FinalizeResult()
        if not sent:
            return result
        items: list[TransactWriteItemTypeDef] = []
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
            items.append(delete_entry_action(entry, outbox_table=self._outbox_table, token=token))
        try:
            self._transact(items)
        except TransactionCancelled as cancelled:
            for index, (entry, _) in enumerate(sent):
                message_reason, entry_reason = cancelled.code_at(2 * index), cancelled.code_at(2 * index + 1)
                if message_reason == CONDITION_FAILED:
                    old = cancelled.old_item_at(2 * index)
                    (result.already_moved if old else result.missing).append(entry)
                elif entry_reason == CONDITION_FAILED:
                    result.claim_lost.append(entry)
                else:
                    result.retry.append(entry)
            return result
        result.done.extend(entry for entry, _ in sent)
        return result

    def delete_entry(self, entry: Entry, *, token: str) -> bool:
        """Delete an entry if it is still ours; False if the claim was lost."""
        try:
            self.calls += 1
            self._client.delete_item(
                TableName=self._outbox_table,
                Key=entry.key,
                ConditionExpression="claim_token = :token",
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(
        self,
        entry: Entry,
        *,
        token: str,
        counted: bool,
        next_attempt_at_ms: int | None = None,
        error: str | None = None,
        unstamp_claimed_at_ms: int | None = None,
    ) -> bool:
        """Undo a claim; the message item is not touched. False if the claim was lost meanwhile.

        `counted`: one more failed attempt, added to the stored count (`ADD`, never a value read earlier:
        another relay may have counted one since). `next_attempt_at_ms`: the entry waits until then
        (backoff). Neither (held back for FIFO order, or out of lease time): only the claim goes.
        `unstamp_claimed_at_ms`: the entry was certainly not sent, so the `first_send_at` this claim set
        (it equals the claim's time) is removed; a stamp of an earlier claim is kept."""
        values: dict[str, Any] = {":token": {"S": token}}
        sets: list[str] = []
        if next_attempt_at_ms is not None:
            sets.append("next_attempt_at = :next")
            values[":next"] = {"N": str(next_attempt_at_ms)}
        if counted:
            values[":one"] = {"N": "1"}
        if error is not None:
            sets.append("last_error = :error")
            values[":error"] = {"S": error[:MAX_ERROR_CHARACTERS]}

        def expression(*removed: str) -> str:
            text = "REMOVE " + ", ".join(("claim_token", "lease_until", *removed))
            text += " SET " + ", ".join(sets) if sets else ""
            return text + (" ADD attempts :one" if counted else "")

        def update(claimed_at_ms: int | None) -> bool:
            if claimed_at_ms is None:
                return self._update_entry(
                    entry, expression(), "claim_token = :token", values, stamp_check=False
                )
            return self._update_entry(
                entry,
                expression("first_send_at"),
                "claim_token = :token AND first_send_at = :claimed_at",
                {**values, ":claimed_at": {"N": str(claimed_at_ms)}},
                stamp_check=True,
            )

        return _unstamping(update, unstamp_claimed_at_ms)

    def _update_entry(
        self,
        entry: Entry,
        expression: str,
        condition: str,
        values: dict[str, Any],
        *,
        stamp_check: bool,
    ) -> bool:
        """One conditional update of an entry; False if the claim is no longer `:token`'s. With
        `stamp_check`, a claim still ours that failed only the stamp condition raises `_StampNotOurs`."""
        try:
            self.calls += 1
            self._client.update_item(
                TableName=self._outbox_table,
                Key=entry.key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            if stamp_check and old.get("claim_token", {}).get("S") == values[":token"]["S"]:
                raise _StampNotOurs from exc
            return False
        return True

    def poison(
        self,
        entry: Entry,
        *,
        token: str,
        attempts: int,
        error: str,
        now: datetime,
        unstamp_claimed_at_ms: int | None = None,
    ) -> bool:
        """One transaction: message PENDING→FAILED with the error, entry PARKED in its place.

        The entry's count grows by one (`ADD`); `attempts` (the count as this relay knows it) is what the
        message records. A FAILED message is still owed (its entry is parked for `requeue`): no TTL.
        `unstamp_claimed_at_ms` as for `release`: the message certainly never reached the queue, so this
        claim's `first_send_at` goes and a later `requeue` is not counted as a resend."""
        return _unstamping(
            lambda claimed_at_ms: self._poison(
                entry, token=token, attempts=attempts, error=error, now=now, unstamp_ms=claimed_at_ms
            ),
            unstamp_claimed_at_ms,
        )

    def _poison(
        self, entry: Entry, *, token: str, attempts: int, error: str, now: datetime, unstamp_ms: int | None
    ) -> bool:
        items = [
            fail_message_action(
                entry, messages_table=self._messages_table, attempts=attempts, error=error, now=now
            ),
            park_entry_action(
                entry, outbox_table=self._outbox_table, token=token, error=error, unstamp_ms=unstamp_ms
            ),
        ]
        try:
            self._transact(items)
        except TransactionCancelled as cancelled:
            if cancelled.retryable:
                raise
            old_entry = cancelled.old_item_at(1) or {}
            if (
                unstamp_ms is not None
                and cancelled.code_at(0) != CONDITION_FAILED
                and old_entry.get("claim_token", {}).get("S") == token
            ):
                raise _StampNotOurs from cancelled
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


def _unstamping(write: Callable[[int | None], bool], claimed_at_ms: int | None) -> bool:
    """Give a claim back removing the `first_send_at` it set (`write(claimed_at_ms)`); if the stamp turns
    out to be an earlier claim's (`_StampNotOurs`), keep it and give the claim back alone (`write(None)`)."""
    if claimed_at_ms is not None:
        try:
            return write(claimed_at_ms)
        except _StampNotOurs:
            pass
    return write(None)

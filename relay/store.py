"""The relay's DynamoDB side: read a shard, claim, fetch payloads, finalize, roll back, poison.

Transactions are built here as data and run by one method (`_transact`) that turns a cancellation into
per-action reason codes; everything else about DynamoDB errors propagates as `ClientError`/`BotoCoreError`
for the relay's retry layer to judge.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from outbox.core.domain import EntryState, Status, iso
from outbox.core.errors import StoreUnavailable
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, TTL_ATTRIBUTE
from outbox.core.settings import Settings
from outbox.data.transactions import client_request_token
from relay.entries import Entry

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

MAX_TRANSACTION_ACTIONS: Final = 100
BATCH_GET_LIMIT: Final = 100
DEFAULT_RETENTION_DAYS: Final = Settings.retention_days
UNPROCESSED_ROUNDS: Final = 5
"""BatchGetItem calls per chunk before keys DynamoDB keeps leaving unprocessed stop the batch."""
UNPROCESSED_FIRST_PAUSE_SECONDS: Final = 0.05
UNPROCESSED_MAX_PAUSE_SECONDS: Final = 1.0
SKIP_REASONS: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
_CLAIM_CONDITION: Final = (
    "attribute_exists(message_id) AND #state = :ready AND "
    "(attribute_not_exists(claim_token) OR lease_until < :now OR claim_token = :token) AND "
    "next_attempt_at <= :now"
)


class ReadsUnprocessed(StoreUnavailable):
    """BatchGetItem kept leaving keys unprocessed (throttled) past its bound: retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _StampNotOurs(Exception):
    """The claim is ours but `first_send_at` was set by an earlier claim."""


class TransactionCancelled(Exception):
    """A transaction was cancelled; `reasons[i]` is the code for action i, `items[i]` the old item if any."""

    def __init__(self, reasons: list[str], items: list[dict[str, Any] | None]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items

    @property
    def retryable(self) -> bool:
        return any(reason in {"TransactionConflict", "ThrottlingError"} for reason in self.reasons)


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
        """The message items (status, payload, attributes) of a claim batch, read consistently.

        Keys DynamoDB leaves unprocessed (throttling) are asked for again with backoff, at most
        `UNPROCESSED_ROUNDS` times and never past `seconds_left()`; then `ReadsUnprocessed` is raised and
        the batch stops like any other AWS error (its entries wait for their lease)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(message_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys: list[dict[str, Any]] = [
                {MESSAGE_KEY: {"S": mid}} for mid in unique[start : start + BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {
                self._messages_table: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "message_id, #status, payload, #attributes, group_id",
                    "ExpressionAttributeNames": {"#status": "status", "#attributes": "attributes"},
                }
            }
            for round_number in itertools.count():
                self.calls += 1
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._messages_table, []):
                    found[item[MESSAGE_KEY]["S"]] = dict(item)
                request = dict(response.get("UnprocessedKeys") or {})
                if not request:
                    break
                pause = min(UNPROCESSED_MAX_PAUSE_SECONDS, UNPROCESSED_FIRST_PAUSE_SECONDS * 2**round_number)
                if round_number + 1 >= UNPROCESSED_ROUNDS or seconds_left() < pause:
                    left = len(request[self._messages_table]["Keys"])
                    raise ReadsUnprocessed(f"BatchGetItem left {left} key(s) unprocessed")
                time.sleep(pause)
        return found

    # -- claiming ----------------------------------------------------------------------------------

    def claim(
        self, entries: Sequence[Entry], *, token: str, now_ms: int, lease_until_ms: int
    ) -> tuple[list[Entry], list[Entry]]:
        """Claim entries in one transaction; returns (claimed, refused). An action cancelled because it
        failed its condition or conflicted is refused (skip it); the others are tried again without it."""
        pending = list(entries)
        refused: list[Entry] = []
        while pending:
            items = [self._claim_action(entry, token, now_ms, lease_until_ms) for entry in pending]
            try:
                self._transact(items)
            except TransactionCancelled as cancelled:
                failed = {i for i, reason in enumerate(cancelled.reasons) if reason in SKIP_REASONS}
                if not failed:
                    raise
                refused.extend(entry for i, entry in enumerate(pending) if i in failed)
                pending = [entry for i, entry in enumerate(pending) if i not in failed]
                continue
            return pending, refused
        return [], refused

    def _claim_action(
        self, entry: Entry, token: str, now_ms: int, lease_until_ms: int
    ) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self._outbox_table,
                "Key": entry.key,
                "UpdateExpression": (
                    "SET claim_token = :token, lease_until = :lease, "
                    "first_send_at = if_not_exists(first_send_at, :now)"
                ),
                "ConditionExpression": _CLAIM_CONDITION,
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {
                    ":token": {"S": token},
                    ":lease": {"N": str(lease_until_ms)},
                    ":now": {"N": str(now_ms)},
                    ":ready": {"S": EntryState.READY},
                },
            }
        }

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
            items.append(self._queue_message_action(entry, sqs_message_id, now))
            items.append(self._delete_entry_action(entry, token))
        try:
            self._transact(items)
        except TransactionCancelled as cancelled:
            for index, (entry, _) in enumerate(sent):
                message_reason, entry_reason = cancelled.reasons[2 * index], cancelled.reasons[2 * index + 1]
                if message_reason == "ConditionalCheckFailed":
                    old = cancelled.items[2 * index]
                    (result.already_moved if old else result.missing).append(entry)
                elif entry_reason == "ConditionalCheckFailed":
                    result.claim_lost.append(entry)
                else:
                    result.retry.append(entry)
            return result
        result.done.extend(entry for entry, _ in sent)
        return result

    def _queue_message_action(
        self, entry: Entry, sqs_message_id: str, now: datetime
    ) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self._messages_table,
                "Key": {MESSAGE_KEY: {"S": entry.message_id}},
                "UpdateExpression": (
                    "SET #status = :queued, queued_at = :now, updated_at = :now, sqs_message_id = :sqs, "
                    "#expires = :expires"
                ),
                "ConditionExpression": "#status = :pending",
                "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":queued": {"S": Status.QUEUED},
                    ":pending": {"S": Status.PENDING},
                    ":now": {"S": iso(now)},
                    ":sqs": {"S": sqs_message_id},
                    ":expires": {"N": str(int((now + self._retention).timestamp()))},
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _delete_entry_action(self, entry: Entry, token: str) -> TransactWriteItemTypeDef:
        return {
            "Delete": {
                "TableName": self._outbox_table,
                "Key": entry.key,
                "ConditionExpression": "claim_token = :token",
                "ExpressionAttributeValues": {":token": {"S": token}},
            }
        }

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
            values[":error"] = {"S": error[:1000]}

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
        stamp = iso(now)
        entry_removes = "claim_token, lease_until" + (", first_send_at" if unstamp_ms is not None else "")
        entry_condition = "claim_token = :token" + (
            " AND first_send_at = :claimed_at" if unstamp_ms is not None else ""
        )
        entry_values: dict[str, Any] = {
            ":parked": {"S": EntryState.PARKED},
            ":error": {"S": error[:1000]},
            ":token": {"S": token},
            ":one": {"N": "1"},
        }
        if unstamp_ms is not None:
            entry_values[":claimed_at"] = {"N": str(unstamp_ms)}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._messages_table,
                    "Key": {MESSAGE_KEY: {"S": entry.message_id}},
                    "UpdateExpression": (
                        "SET #status = :failed, last_error = :error, failed_at = :now, updated_at = :now, "
                        "attempts = :attempts REMOVE #expires"
                    ),
                    "ConditionExpression": "#status = :pending",
                    "ExpressionAttributeNames": {"#status": "status", "#expires": TTL_ATTRIBUTE},
                    "ExpressionAttributeValues": {
                        ":failed": {"S": Status.FAILED},
                        ":pending": {"S": Status.PENDING},
                        ":error": {"S": error[:1000]},
                        ":now": {"S": stamp},
                        ":attempts": {"N": str(attempts)},
                    },
                }
            },
            {
                "Update": {
                    "TableName": self._outbox_table,
                    "Key": entry.key,
                    "UpdateExpression": (
                        f"SET #state = :parked, last_error = :error REMOVE {entry_removes} ADD attempts :one"
                    ),
                    "ConditionExpression": entry_condition,
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": entry_values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        try:
            self._transact(items)
        except TransactionCancelled as cancelled:
            if cancelled.retryable:
                raise
            old_entry = cancelled.items[1] or {}
            if (
                unstamp_ms is not None
                and cancelled.reasons[0] != "ConditionalCheckFailed"
                and old_entry.get("claim_token", {}).get("S") == token
            ):
                raise _StampNotOurs from cancelled
            return False
        return True

    # -- one adapter for every transaction ---------------------------------------------------------

    def _transact(self, items: list[TransactWriteItemTypeDef]) -> None:
        self.calls += 1
        try:
            # A token of its own for every call: botocore's resends of this call (a lost response, a 5xx)
            # reuse it, so DynamoDB applies the call once; a later call with the same items (a retry
            # after a cancellation) is not answered with a cancelled call's outcome (ADR 0003).
            self._client.transact_write_items(
                TransactItems=items, ClientRequestToken=client_request_token(items, next(self._call_numbers))
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            raw: list[Any] = list(exc.response.get("CancellationReasons", []))
            raw += [{}] * (len(items) - len(raw))
            reasons = [str(reason.get("Code") or "None") for reason in raw]
            old_items = [dict(reason["Item"]) if reason.get("Item") else None for reason in raw]
            raise TransactionCancelled(reasons, old_items) from exc


def _unstamping(write: Callable[[int | None], bool], claimed_at_ms: int | None) -> bool:
    """Give a claim back removing the `first_send_at` it set (`write(claimed_at_ms)`); if the stamp turns
    out to be an earlier claim's (`_StampNotOurs`), keep it and give the claim back alone (`write(None)`)."""
    if claimed_at_ms is not None:
        try:
            return write(claimed_at_ms)
        except _StampNotOurs:
            pass
    return write(None)

"""Why was your transaction cancelled? The outbox's part of a `TransactionCanceledException`.

A caller who appends `outbox_write(...).items` to their own `TransactWriteItems` and has it cancelled gets
one reason per item, by position (`[ConditionalCheckFailed, ConditionalCheckFailed, None]`).
`explain_cancellation` (or `OutboxWrite.explain`) finds the outbox's two items in that list and says
whose item failed and what it means:

- the message Put's `attribute_not_exists` failed: a message with this id exists. With an idempotency key
  that is the caller's earlier, committed request; the stored message (returned with `ALL_OLD`) tells a
  **replay** (same request: the earlier transaction did everything this one would) from an **idempotency
  conflict** (the key was used for a different request);
- the entry Put's condition failed: should never happen, entry ids are made fresh;
- `TransactionConflict` (or `ThrottlingError`) on an outbox item: another transaction touched it; retry;
- anything else failing is the caller's own items, by index and code.

Nothing here talks to AWS, and a reason list that is missing, short or malformed is explained as far as it
goes, never with an exception. Only misuse raises: an `error` of the wrong type (`TypeError`), or neither
the transaction's items nor the outbox items' `offset` in it (`ValueError`). The reasons are read by
`outbox.data.transact.decode_error`, the decoder of the outbox's own cancellations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import ClientError

from outbox.data.transact import CANCELLED, CONDITION_FAILED, RETRYABLE_CODES, Reason, decode_error, reason_at


class OutboxItems(Protocol):
    """What the explainer needs of an `outbox.api.OutboxWrite` (a protocol, so that this module does not
    import the API that uses it)."""

    @property
    def message_id(self) -> str: ...

    @property
    def items(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def idempotency_key(self) -> str | None: ...

    @property
    def request_hash(self) -> str | None: ...


class CancellationKind(StrEnum):
    """What cancelled the transaction, the outbox's reasons first (see `explain_cancellation`)."""

    NOT_CANCELLED = "not_cancelled"
    """The error is not a `TransactionCanceledException` (throttling, validation, ...): nothing to explain."""
    REPLAY = "replay"
    """The message exists from an earlier committed request with the same key and the same request."""
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """The message exists from an earlier request with the same key and a different request."""
    MESSAGE_EXISTS = "message_exists"
    """The message exists, and it cannot be told which of the two above (no stored item returned), or the
    write had no idempotency key (its id was fresh: should not happen)."""
    ENTRY_EXISTS = "entry_exists"
    """The outbox entry's condition failed. Entry ids are fresh: should not happen."""
    OUTBOX_REFUSED = "outbox_refused"
    """An outbox item failed with another code (a `ValidationError`, for one)."""
    CALLER = "caller"
    """Only the caller's own items failed (or the outbox's only with a retryable code, as well)."""
    OUTBOX_CONFLICT = "outbox_conflict"
    """`TransactionConflict` or `ThrottlingError` on an outbox item, and nothing that a retry cannot fix."""
    UNEXPLAINED = "unexplained"
    """Cancelled, but the reasons name no failed item (missing or malformed)."""


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """One failed item: its index in the `TransactItems` list and DynamoDB's code for it."""

    index: int
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class CancellationExplanation:
    """Why a transaction holding an outbox write was cancelled. `str()` gives `summary`, one line."""

    kind: CancellationKind
    summary: str
    message_id: str
    error_code: str
    """The `ClientError`'s code: `TransactionCanceledException` unless `kind` is `NOT_CANCELLED`."""
    outbox_failures: tuple[ItemFailure, ...] = ()
    caller_failures: tuple[ItemFailure, ...] = ()
    retryable: bool = False
    """Every failed item failed with `TransactionConflict` or `ThrottlingError`: the same transaction may
    succeed if sent again."""
    existing_message: Mapping[str, Any] | None = field(default=None, compare=False)
    """The stored message (DynamoDB's low-level form) when the message Put failed and DynamoDB returned it."""

    @property
    def outbox_replay(self) -> bool:
        """This transaction repeats an earlier committed one (same idempotency key, same request): the
        message, and the caller's writes that went with it, are in place."""
        return self.kind is CancellationKind.REPLAY

    @property
    def idempotency_conflict(self) -> bool:
        return self.kind is CancellationKind.IDEMPOTENCY_CONFLICT

    @property
    def caused_by_outbox(self) -> bool:
        return bool(self.outbox_failures)

    @property
    def caused_by_caller(self) -> bool:
        return bool(self.caller_failures)

    def __str__(self) -> str:
        return self.summary


def explain_cancellation(
    error: ClientError | Mapping[str, Any] | Sequence[Any],
    transact_items: Sequence[object] | None,
    write: OutboxItems,
    *,
    offset: int | None = None,
) -> CancellationExplanation:
    """Explain a cancelled transaction that held `write.items`.

    `error`: the `ClientError` (or its `response` dict, or its `CancellationReasons` list).
    `transact_items`: the `TransactItems` list that was sent; the outbox's items are found in it by
    identity, else by equality. Or pass `None` and `offset=`, the index of the message Put (the entry Put
    follows it).
    """
    message_index, entry_index = _positions(write, transact_items, offset)
    decoded = decode_error(error)
    error_code, error_message, reasons = decoded.code, decoded.message, decoded.reasons

    if error_code != CANCELLED:
        summary = f"not a cancellation: {error_code}: {error_message}"
        return CancellationExplanation(CancellationKind.NOT_CANCELLED, summary, write.message_id, error_code)
    if reasons is None:
        summary = "the transaction was cancelled, but DynamoDB gave no reasons"
        return CancellationExplanation(CancellationKind.UNEXPLAINED, summary, write.message_id, error_code)

    size = max(len(reasons), message_index + 1, entry_index + 1)
    failures = [
        ItemFailure(index, reason.code, reason.message)
        for index in range(size)
        if (reason := reason_at(reasons, index)).code is not None
    ]
    outbox = tuple(failure for failure in failures if failure.index in (message_index, entry_index))
    caller = tuple(failure for failure in failures if failure.index not in (message_index, entry_index))
    retryable = bool(failures) and all(failure.code in RETRYABLE_CODES for failure in failures)
    message_reason = reason_at(reasons, message_index)
    kind, summary = _classify(
        write,
        reasons,
        message_index=message_index,
        entry_index=entry_index,
        outbox=outbox,
        caller=caller,
        retryable=retryable,
    )
    return CancellationExplanation(
        kind,
        summary,
        write.message_id,
        error_code,
        outbox_failures=outbox,
        caller_failures=caller,
        retryable=retryable,
        existing_message=message_reason.old_item if message_reason.code == CONDITION_FAILED else None,
    )


def _classify(
    write: OutboxItems,
    reasons: Sequence[Reason],
    *,
    message_index: int,
    entry_index: int,
    outbox: tuple[ItemFailure, ...],
    caller: tuple[ItemFailure, ...],
    retryable: bool,
) -> tuple[CancellationKind, str]:
    """The outbox's own failures first (a message that exists explains the caller's failures too, on a
    replay), then anything a retry cannot fix, then conflicts."""
    yours = f" (your own items failed too: {_listed(caller)})" if caller else ""
    message_reason = reason_at(reasons, message_index)
    if message_reason.code == CONDITION_FAILED:
        kind, summary = _message_exists(write, message_reason.old_item)
        return kind, summary + yours
    if reason_at(reasons, entry_index).code == CONDITION_FAILED:
        summary = (
            f"the outbox entry of message {write.message_id} (#{entry_index}) exists already;"
            " entry ids are made fresh, so this should not happen"
        )
        return CancellationKind.ENTRY_EXISTS, summary + yours
    refused = [failure for failure in outbox if failure.code not in RETRYABLE_CODES]
    if refused:
        failure = refused[0]
        which = _which(failure.index, message_index)
        detail = f": {failure.message}" if failure.message else ""
        return (
            CancellationKind.OUTBOX_REFUSED,
            f"the outbox's {which} (#{failure.index}) was refused: {failure.code}{detail}{yours}",
        )
    if caller and (not outbox or not retryable):
        summary = f"your own items failed, not the outbox's: {_listed(caller)}"
        return CancellationKind.CALLER, summary + (" (retryable)" if retryable else "")
    if outbox:
        failure = outbox[0]
        summary = (
            f"{failure.code} on the outbox's {_which(failure.index, message_index)} (#{failure.index}):"
            " another request touched it at the same time; send the transaction again"
        )
        return CancellationKind.OUTBOX_CONFLICT, summary + yours
    return (
        CancellationKind.UNEXPLAINED,
        f"the transaction was cancelled, but no item has a failure reason ({len(reasons)} reasons given)",
    )


def _message_exists(write: OutboxItems, stored: Mapping[str, Any] | None) -> tuple[CancellationKind, str]:
    key = write.idempotency_key
    if key is None:
        return (
            CancellationKind.MESSAGE_EXISTS,
            f"message {write.message_id} exists already, though its id was made fresh (no idempotency"
            " key): this should not happen",
        )
    earlier = (
        f"idempotency key {key!r} was used by an earlier, committed request (message {write.message_id})"
    )
    stored_hash = _string_attribute(stored, "request_hash")
    if stored_hash is None:
        return (
            CancellationKind.MESSAGE_EXISTS,
            f"{earlier}; DynamoDB returned no stored message to tell a replay from a conflict",
        )
    if stored_hash == write.request_hash:
        return CancellationKind.REPLAY, f"replay: {earlier} with the same request, so it is done already"
    return (
        CancellationKind.IDEMPOTENCY_CONFLICT,
        f"idempotency conflict: {earlier} with a different request",
    )


def _positions(
    write: OutboxItems, transact_items: Sequence[object] | None, offset: int | None
) -> tuple[int, int]:
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be the index of the outbox's message Put, not {offset!r}")
        return offset, offset + 1
    if transact_items is None:
        raise ValueError("pass the TransactItems list that was sent, or offset= (where write.items start)")
    message_index = _find(transact_items, write.items[0]) if write.items else None
    entry_index = _find(transact_items, write.items[1]) if len(write.items) > 1 else None
    if message_index is None or entry_index is None:
        raise ValueError(
            f"the outbox items of message {write.message_id} are not in these TransactItems;"
            " pass the list that was sent, or offset="
        )
    return message_index, entry_index


def _find(transact_items: Sequence[object], target: object) -> int | None:
    for index, item in enumerate(transact_items):
        if item is target:
            return index
    for index, item in enumerate(transact_items):
        if item == target:
            return index
    return None


def _string_attribute(item: Mapping[str, Any] | None, name: str) -> str | None:
    value = item.get(name) if item is not None else None
    text = value.get("S") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else None


def _which(index: int, message_index: int) -> str:
    return "message Put" if index == message_index else "entry Put"


def _listed(failures: Sequence[ItemFailure]) -> str:
    return ", ".join(f"#{failure.index} {failure.code}" for failure in failures)

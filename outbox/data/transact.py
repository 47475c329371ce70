"""The one place that runs `TransactWriteItems`, and a cancellation decoded into one `Reason` per action.

Ingest, the relay and the operator commands build their transactions as data (`outbox.data.transactions`,
`relay.transactions`, `outbox.ops.transactions`) and run them with `transact`. Each call carries a
`ClientRequestToken` made from its items and the caller's call number: botocore's resends of the call (a
lost response, a 5xx) keep it, so DynamoDB applies the call at most once; a new call (a retry after a
cancellation) gets a new one, since a token stands for its first call's outcome, a cancellation included,
for 10 minutes (ADR 0003).

A `TransactionCanceledException` becomes `TransactionCancelled`; every other error propagates as botocore
raised it, for each caller's own policy. `decode_error` is the decoder underneath, shared with the
user-facing `outbox.data.cancellation.explain_cancellation`, which reads the caller's own cancellations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from outbox.data.transactions import client_request_token

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

CANCELLED: Final = "TransactionCanceledException"
CONDITION_FAILED: Final = "ConditionalCheckFailed"
RETRYABLE_CODES: Final = frozenset({"TransactionConflict", "ThrottlingError"})
"""Reasons a second try can get past (docs/design.md §3.3): another transaction held the item, or the
item's partition was throttled."""
_REASONS_IN_MESSAGE: Final = re.compile(r"\[([^\[\]]*)\]\s*$")
"""DynamoDB's message ends with the codes in order: `... specific reasons [ConditionalCheckFailed, None]`."""
_MAX_TEXT: Final = 200


@dataclass(frozen=True, slots=True)
class Reason:
    """DynamoDB's verdict on one action of a cancelled transaction."""

    code: str | None
    """None: this action did not fail (DynamoDB writes the string `None`)."""
    message: str = ""
    """DynamoDB's words for it, on one line (at most 200 characters)."""
    old_item: Mapping[str, Any] | None = field(default=None, repr=False)
    """The item as it was, when the action asked for it (`ReturnValuesOnConditionCheckFailure=ALL_OLD`)
    and its condition failed."""

    @property
    def condition_failed(self) -> bool:
        return self.code == CONDITION_FAILED

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


NO_REASON: Final = Reason(None)


class TransactionCancelled(Exception):
    """A transaction was cancelled: `reasons[i]` is DynamoDB's verdict on action i (one per action)."""

    def __init__(self, reasons: Sequence[Reason]) -> None:
        self.reasons = tuple(reasons)
        super().__init__(f"transaction cancelled: {self.codes}")

    @property
    def codes(self) -> list[str]:
        """The codes in order, `"None"` for an action that did not fail, as DynamoDB lists them."""
        return [reason.code or "None" for reason in self.reasons]

    @property
    def retryable(self) -> bool:
        """Some action failed with a code a second try can get past (it may still fail on another)."""
        return any(reason.retryable for reason in self.reasons)

    @property
    def failed_conditions(self) -> frozenset[int]:
        """The actions whose condition failed: a second try of the same items fails them again."""
        return frozenset(index for index, reason in enumerate(self.reasons) if reason.condition_failed)

    def failed_with(self, codes: frozenset[str]) -> frozenset[int]:
        """The actions that failed with one of `codes`."""
        return frozenset(index for index, reason in enumerate(self.reasons) if reason.code in codes)

    def reason_at(self, index: int) -> Reason:
        return reason_at(self.reasons, index)

    def code_at(self, index: int) -> str | None:
        return self.reason_at(index).code

    def old_item_at(self, index: int) -> Mapping[str, Any] | None:
        """The old item action `index` returned, None when it returned none (or an empty one)."""
        return self.reason_at(index).old_item or None


def transact(
    client: DynamoDBClient, items: Sequence[TransactWriteItemTypeDef], *, call_number: int = 1
) -> None:
    """Run `items` in one transaction under the token of (`items`, `call_number`).

    `call_number`: 1 for a first call, a new number for every later call with the same items (a retry
    after a cancellation), so no call is answered with an earlier call's outcome. Raises
    `TransactionCancelled`; any other `ClientError` or `BotoCoreError` propagates unchanged.
    """
    try:
        client.transact_write_items(
            TransactItems=list(items), ClientRequestToken=client_request_token(items, call_number)
        )
    except ClientError as exc:
        decoded = decode_error(exc)
        if decoded.code != CANCELLED:
            raise
        reasons = decoded.reasons or ()
        padding = (NO_REASON,) * (len(items) - len(reasons))
        raise TransactionCancelled((*reasons, *padding)) from exc


@dataclass(frozen=True, slots=True)
class TransactionRetryPolicy:
    """Tenacity's share of the retrying: only cancellations a retry can fix. Throttling and 5xx are
    retried by botocore's standard mode before they reach here."""

    attempts: int = 4
    max_wait_seconds: float = 0.5

    def run(
        self,
        client: DynamoDBClient,
        items: Sequence[TransactWriteItemTypeDef],
        *,
        retry_if: Callable[[TransactionCancelled], bool],
    ) -> None:
        """`transact(items)`, again (under a new token each time) while a cancellation satisfies
        `retry_if`, at most `attempts` times in all; the last cancellation is raised."""
        for attempt in self.retrying(retry_if):
            with attempt:
                transact(client, items, call_number=attempt.retry_state.attempt_number)

    def retrying(self, retry_if: Callable[[TransactionCancelled], bool]) -> Retrying:
        return Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, TransactionCancelled) and retry_if(exc)),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.05, max=self.max_wait_seconds),
            reraise=True,
        )


# -- decoding ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedError:
    """A DynamoDB error as far as it can be read."""

    code: str
    """`TransactionCanceledException` for a cancellation; `Unknown` when the error names no code."""
    message: str
    """On one line (at most 200 characters)."""
    reasons: tuple[Reason, ...] | None
    """One per action, in order, as DynamoDB gave them (possibly fewer than the actions); None when
    there are none to read."""


def decode_error(error: object) -> DecodedError:
    """Decode a botocore `ClientError`, its `response` dict, or a `CancellationReasons` list (dicts, or
    codes as strings). The reasons come from `CancellationReasons`, else from the codes DynamoDB lists
    at the end of its message. A malformed part is read as far as it goes, never raised on; only an
    `error` of another type raises (`TypeError`)."""
    if isinstance(error, ClientError):
        response: object = error.response
    elif isinstance(error, Mapping):
        response = error
    elif isinstance(error, Sequence) and not isinstance(error, str | bytes):
        return DecodedError(CANCELLED, "", tuple(decode_reason(entry) for entry in error))
    else:
        raise TypeError(
            "explain a botocore ClientError, its response dict or its CancellationReasons list,"
            f" not {type(error).__name__}"
        )
    if not isinstance(response, Mapping):
        return DecodedError("Unknown", "", None)
    details = response.get("Error")
    details = details if isinstance(details, Mapping) else {}
    raw_reasons = response.get("CancellationReasons")
    code = details.get("Code")
    if not isinstance(code, str) or not code:
        code = CANCELLED if raw_reasons is not None else "Unknown"
    message = details.get("Message")
    message = one_line(message) if isinstance(message, str) else ""
    if isinstance(raw_reasons, Sequence) and not isinstance(raw_reasons, str | bytes):
        return DecodedError(code, message, tuple(decode_reason(entry) for entry in raw_reasons))
    found = _REASONS_IN_MESSAGE.search(message)
    if code == CANCELLED and found is not None:
        return DecodedError(
            code, message, tuple(decode_reason(text.strip()) for text in found.group(1).split(","))
        )
    return DecodedError(code, message, None)


def decode_reason(entry: object) -> Reason:
    """One `CancellationReasons` entry (`{"Code": ..., "Message": ..., "Item": ...}`), or a code alone."""
    if isinstance(entry, str):
        return Reason(_code(entry))
    if not isinstance(entry, Mapping):
        return NO_REASON
    message = entry.get("Message")
    item = entry.get("Item")
    return Reason(
        _code(entry.get("Code")),
        one_line(message) if isinstance(message, str) else "",
        item if isinstance(item, Mapping) else None,
    )


def reason_at(reasons: Sequence[Reason], index: int) -> Reason:
    """Reason `index`, or `NO_REASON` past the end (DynamoDB may list fewer reasons than actions)."""
    return reasons[index] if 0 <= index < len(reasons) else NO_REASON


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_TEXT else line[: _MAX_TEXT - 1] + "…"


def _code(value: object) -> str | None:
    """DynamoDB writes `None` (the string) for an action that did not fail."""
    if not isinstance(value, str) or value.strip() in ("", "None", "null"):
        return None
    return value.strip()

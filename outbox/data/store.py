"""The Messages table as the ingest path sees it: one adapter that runs the ingest transaction and reads
messages, translating DynamoDB's errors into the outbox's own (`outbox.core.errors`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from outbox.core.errors import StoreUnavailable
from outbox.core.schema import MESSAGE_KEY
from outbox.data.transactions import client_request_token

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

RETRYABLE_CANCELLATION: Final = frozenset({"TransactionConflict", "ThrottlingError"})
"""Cancellation reasons that a second try can get past (docs/design.md §3.3)."""
_TRANSIENT_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


class MessageExists(Exception):
    """The message id is taken: `old_item` is the stored message (None when DynamoDB did not say)."""

    def __init__(self, old_item: dict[str, Any] | None) -> None:
        super().__init__("message already exists")
        self.old_item = old_item


class _RetryableConflict(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TransactionRetryPolicy:
    """Tenacity's share of the retrying: only cancellations a retry can fix. Throttling and 5xx are
    retried by botocore's standard mode before they reach here."""

    attempts: int = 4
    max_wait_seconds: float = 0.5

    def retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(_RetryableConflict),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.05, max=self.max_wait_seconds),
            reraise=True,
        )


class MessageStore:
    def __init__(
        self,
        client: DynamoDBClient,
        messages_table: str,
        retry_policy: TransactionRetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._messages_table = messages_table
        self._retry_policy = retry_policy or TransactionRetryPolicy()

    def write_new(self, items: Sequence[TransactWriteItemTypeDef]) -> None:
        """Run the ingest transaction. Raises `MessageExists` when the message's condition failed (a
        replay or a reused key) and `StoreUnavailable` when nothing could be written.

        Each attempt after a cancellation sends the same items under a new `ClientRequestToken`: the
        cancelled attempt's token may stand for its cancellation for 10 minutes (ADR 0003). Within one
        attempt, botocore's resends (a lost response, a 5xx) keep the token, so DynamoDB runs the
        transaction at most once. The items' conditions (`attribute_not_exists` on the message and entry
        keys) keep the write single whatever the token.
        """
        try:
            for attempt in self._retry_policy.retrying():
                with attempt:
                    token = client_request_token(items, attempt.retry_state.attempt_number)
                    self._transact(items, token)
        except _RetryableConflict:
            raise StoreUnavailable(
                "the write kept conflicting with another request", retryable=True
            ) from None

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self._messages_table, Key={MESSAGE_KEY: {"S": message_id}}, ConsistentRead=True
            )
        except ClientError as exc:
            raise _unavailable(exc) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"DynamoDB could not be reached: {type(exc).__name__}", retryable=True
            ) from exc
        item = response.get("Item")
        return dict(item) if item is not None else None

    def _transact(self, items: Sequence[TransactWriteItemTypeDef], token: str) -> None:
        try:
            self._client.transact_write_items(TransactItems=list(items), ClientRequestToken=token)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons", [])
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    raise MessageExists(dict(reasons[0]["Item"]) if "Item" in reasons[0] else None) from exc
                if any(reason.get("Code") in RETRYABLE_CANCELLATION for reason in reasons):
                    raise _RetryableConflict from exc
            if code == "IdempotentParameterMismatchException":
                # The same token with other items within 10 minutes: the first write went through.
                raise MessageExists(None) from exc
            raise _unavailable(exc) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"DynamoDB could not be reached: {type(exc).__name__}", retryable=True
            ) from exc


def _unavailable(exc: ClientError) -> StoreUnavailable:
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    return StoreUnavailable(f"DynamoDB refused the request ({code})", retryable=code in _TRANSIENT_CODES)

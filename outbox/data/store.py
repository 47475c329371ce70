"""The Messages table as the ingest path sees it: one adapter that runs the ingest transaction and reads
messages, translating DynamoDB's errors into the outbox's own (`outbox.core.errors`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.errors import StoreUnavailable
from outbox.data.messages import MessageRecord, read_message
from outbox.data.transact import CANCELLED, CONDITION_FAILED, TransactionCancelled, TransactionRetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

__all__ = ["MessageExists", "MessageStore", "TransactionRetryPolicy"]

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
    """The message id is taken: `existing` is the stored message (None when DynamoDB did not say)."""

    def __init__(self, existing: MessageRecord | None) -> None:
        super().__init__("message already exists")
        self.existing = existing


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
            self._retry_policy.run(self._client, items, retry_if=_conflicted)
        except TransactionCancelled as cancelled:
            if cancelled.code_at(0) == CONDITION_FAILED:
                old_item = cancelled.old_item_at(0)
                raise MessageExists(MessageRecord.from_item(old_item) if old_item else None) from cancelled
            if cancelled.retryable:
                raise StoreUnavailable(
                    "the write kept conflicting with another request", retryable=True
                ) from None
            raise StoreUnavailable(
                f"DynamoDB refused the request ({CANCELLED})", retryable=False
            ) from cancelled
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "IdempotentParameterMismatchException":
                # The same token with other items within 10 minutes: the first write went through.
                raise MessageExists(None) from exc
            raise _unavailable(exc) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"DynamoDB could not be reached: {type(exc).__name__}", retryable=True
            ) from exc

    def get_message(self, message_id: str) -> MessageRecord | None:
        """The message, read consistently; None when there is none."""
        try:
            return read_message(self._client, self._messages_table, message_id)
        except ClientError as exc:
            raise _unavailable(exc) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"DynamoDB could not be reached: {type(exc).__name__}", retryable=True
            ) from exc


def _conflicted(cancelled: TransactionCancelled) -> bool:
    """Worth another attempt: a conflict or throttling, and the message id is not taken (that one is
    decided by the stored message, not by trying again)."""
    return cancelled.code_at(0) != CONDITION_FAILED and cancelled.retryable


def _unavailable(exc: ClientError) -> StoreUnavailable:
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    return StoreUnavailable(f"DynamoDB refused the request ({code})", retryable=code in _TRANSIENT_CODES)

"""The Messages table (and the Payloads table and the payload bucket, ADR 0023) as the ingest path sees
them: one adapter that writes a payload stored apart or in S3, runs the ingest transaction and reads
messages and payloads, translating DynamoDB's and S3's errors into the outbox's own
(`outbox.core.errors`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.clients import s3_client
from outbox.core.errors import StoreUnavailable
from outbox.data import claim_check
from outbox.data.claim_check import SIZE_UNKNOWN, ObjectAccessDenied, PayloadObject, is_object_uri
from outbox.data.messages import MessageRecord, read_message
from outbox.data.payloads import put_payload, read_payload
from outbox.data.transact import CANCELLED, CONDITION_FAILED, TransactionCancelled, TransactionRetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client

__all__ = ["MessageExists", "MessageStore", "PayloadMissing", "TransactionRetryPolicy"]
_T = TypeVar("_T")

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


class PayloadMissing(StoreUnavailable):
    """A message names a payload stored apart that is not there (expired past its horizon, or deleted by
    hand), or S3 refused to read its object (how S3 answers for a missing one, `ObjectAccessDenied`); or
    no Payloads table is configured to read it from."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class MessageStore:
    def __init__(
        self,
        client: DynamoDBClient,
        messages_table: str,
        retry_policy: TransactionRetryPolicy | None = None,
        *,
        payloads_table: str | None = None,
        s3: Callable[[], S3Client] = s3_client,
    ) -> None:
        """`s3`: makes the S3 client, called only for a payload in S3 (ADR 0023), so a store that never
        meets one never builds it (S3's service model is the largest botocore loads, at a cold start)."""
        self._client = client
        self._messages_table = messages_table
        self._payloads_table = payloads_table
        self._s3 = s3
        self._retry_policy = retry_policy or TransactionRetryPolicy()

    def put_payload(self, item: Mapping[str, AttributeValueTypeDef]) -> None:
        """Write a payload stored apart, before the transaction that names it (ADR 0023)."""
        if self._payloads_table is None:
            raise PayloadMissing("no Payloads table is configured (PAYLOADS_TABLE)")
        table = self._payloads_table
        _translated(lambda: put_payload(self._client, table, item))

    def put_payload_object(self, obj: PayloadObject, body: str) -> None:
        """Write a payload's S3 object, before the transaction that names it (ADR 0023); S3's errors are
        `StoreUnavailable` (`claim_check.write_object`)."""
        claim_check.write_object(self._s3(), obj, body)

    def payload_of(self, message: MessageRecord) -> str | None:
        """The message's payload, from its item, the Payloads table or its S3 object; `PayloadMissing`
        when it names one that is not there (or, for an object, that S3 will not read: see
        `ObjectAccessDenied`)."""
        if message.payload_ref is None:
            return message.payload
        if is_object_uri(message.payload_ref):
            return self._object_payload(message, message.payload_ref)
        if self._payloads_table is None:
            raise PayloadMissing(
                f"message {message.message_id} keeps its payload in the Payloads table, "
                "and PAYLOADS_TABLE is not set"
            )
        table, ref = self._payloads_table, message.payload_ref
        payload = _translated(lambda: read_payload(self._client, table, ref))
        if payload is None:
            raise PayloadMissing(f"the payload of message {message.message_id} is gone (payload {ref})")
        return payload

    def _object_payload(self, message: MessageRecord, uri: str) -> str:
        size = message.payload_size if message.payload_size is not None else SIZE_UNKNOWN
        try:
            obj = PayloadObject.from_uri(uri, size)
        except ValueError:
            raise PayloadMissing(f"message {message.message_id} names no object ({uri[:80]})") from None
        try:
            payload = claim_check.read_payload(self._s3(), obj)
        except ObjectAccessDenied as denied:
            raise PayloadMissing(
                f"the payload of message {message.message_id} cannot be read from {uri}: S3 refused "
                "GetObject (AccessDenied), its answer for an object that is gone to a reader without "
                "s3:ListBucket, and for one this reader may not read"
            ) from denied
        if payload is None:
            raise PayloadMissing(f"the payload of message {message.message_id} is gone ({uri})")
        return payload

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
        return _translated(lambda: read_message(self._client, self._messages_table, message_id))


def _translated(call: Callable[[], _T]) -> _T:
    """`call()`, with DynamoDB's errors as `StoreUnavailable`."""
    try:
        return call()
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

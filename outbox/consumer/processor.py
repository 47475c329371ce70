"""Consuming outbox messages from SQS with their status kept: PROCESSING while a consumer works on one,
COMPLETED when it is done, and a delivery of a COMPLETED message acknowledged without running the
consumer's code again (ADR 0019).

`OutboxConsumer.record_handler(fn)` is a record handler for Powertools' batch utility
(`process_partial_response` with `BatchProcessor` or `SqsFifoPartialProcessor`): a record it raises for
becomes a batch item failure that SQS delivers again; Powertools keeps the rest of the batch.

A payload above 350,000 bytes reaches the queue as the AWS SQS Extended Client's pointer to its S3 object
(ADR 0023). Lambda's SQS mapping hands the pointer over as it is, so the helper reads the object itself
(`s3:GetObject`, what `OutboxConstruct.grant_consume` gives) and the consumer's function gets the payload,
as from any other message. It never deletes the object: a redrive or a second delivery needs it, and the
bucket's lifecycle rule expires it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError

from outbox.consumer.transitions import Claim, claim_update, complete_action, give_back_update
from outbox.core import exact_json
from outbox.core.clients import s3_client
from outbox.core.domain import Status, epoch_millis
from outbox.core.tracing import traceparent_of, valid_xray_header
from outbox.data.claim_check import RESERVED_ATTRIBUTES, is_pointer_body, read_payload
from outbox.data.transact import TransactionCancelled, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client

logger = Logger(service="outbox-consumer", child=True)

MESSAGE_ID_ATTRIBUTE: Final = "message_id"
"""The message attribute the relay sends every message with (relay/sender.py)."""
DEFAULT_PROCESSING_SECONDS: Final = 60
"""How long a claim holds a message: at least the consumer function's timeout (ADR 0019)."""
MAX_TRANSACTION_ACTIONS: Final = 100
DEFAULT_RETENTION_DAYS: Final = 14


class Consumed(StrEnum):
    COMPLETED = "completed"
    """The consumer's function ran and the message is COMPLETED (with its writes, if it returned any)."""
    DUPLICATE = "duplicate"
    """The message was COMPLETED already: acknowledged, the function not run again."""


class NotClaimed(Exception):
    """This delivery cannot be worked on now (another consumer holds the message, or it is FAILED or
    unknown): raised so that SQS delivers it again later; its redrive policy decides when it stops."""


class ClaimLost(Exception):
    """The claim ran out and another consumer took the message over: nothing of this run was committed."""


class PayloadUnreadable(Exception):
    """The message points at a payload object that is gone, or in a bucket other than the outbox's: the
    message is given back (and ends in the dead-letter queue after its receives), never consumed empty."""


@dataclass(frozen=True, slots=True)
class ConsumedMessage:
    """What the consumer's function gets: the message as the producer accepted it."""

    message_id: str
    body: str
    """The payload as sent: exact JSON text (read from its S3 object when the message carried a pointer)."""
    attributes: Mapping[str, str]
    """The producer's message attributes (the `message_id` attribute and a pointer's size attribute left
    out)."""
    receive_count: int
    """Deliveries to a consumer helper so far, this one included (the message item's count)."""
    group_id: str | None = None
    trace_header: str | None = None
    """The X-Ray trace of the POST that sent it, as SQS carried it (`AWSTraceHeader`, ADR 0021)."""
    record: SQSRecord | None = field(default=None, repr=False, compare=False)

    @property
    def payload(self) -> Any:
        """The body parsed, numbers exactly as written (`outbox.core.exact_json`)."""
        return exact_json.loads(self.body)

    @property
    def traceparent(self) -> str | None:
        """The same trace as a W3C `traceparent`, for an OpenTelemetry or HTTP client downstream."""
        return traceparent_of(self.trace_header) if self.trace_header else None


Work = Callable[[ConsumedMessage], Sequence["TransactWriteItemTypeDef"] | None]
"""The consumer's function. It may return DynamoDB actions (`TransactWriteItems` items) to commit in the
same transaction as COMPLETED: at most 99, as the transaction's own limit leaves room for one more."""


class OutboxConsumer:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        messages_table: str,
        processing_seconds: int = DEFAULT_PROCESSING_SECONDS,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        payloads_bucket: str | None = None,
        s3: Callable[[], S3Client] = s3_client,
    ) -> None:
        """`payloads_bucket`: the outbox's payload bucket (`Settings.payloads_bucket`); given, a pointer to
        any other bucket is refused rather than read with this consumer's credentials. `s3`: makes the S3
        client, called only for a message that carries a pointer."""
        if processing_seconds < 1:
            raise ValueError("processing_seconds must be at least 1")
        self._client = dynamodb
        self._payloads_bucket = payloads_bucket
        self._s3 = s3
        self._table = messages_table
        self._processing = timedelta(seconds=processing_seconds)
        self._retention = timedelta(days=retention_days)
        self._now = now

    def record_handler(self, work: Work) -> Callable[[SQSRecord], Consumed]:
        """`work` as a Powertools record handler."""
        return lambda record: self.consume(record, work)

    def consume(self, record: SQSRecord, work: Work) -> Consumed:
        """Claim the record's message, run `work` and complete it; or acknowledge a duplicate. Raises
        (`NotClaimed`, `ClaimLost`, or what `work` raised) for SQS to deliver the record again."""
        message_id = _message_id(record)
        claim = Claim(message_id, str(uuid.uuid4()), epoch_millis(self._now() + self._processing))
        item = self._claim(claim)
        if item is None:
            return Consumed.DUPLICATE
        try:
            message = ConsumedMessage(
                message_id=message_id,
                body=self._body(record),
                attributes={
                    name: str(value.get("stringValue") or "")
                    for name, value in _message_attributes(record).items()
                    if name != MESSAGE_ID_ATTRIBUTE and name not in RESERVED_ATTRIBUTES
                },
                receive_count=int(item.get("receive_count", {}).get("N", "1")),
                group_id=record.attributes.message_group_id,
                trace_header=valid_xray_header(record.attributes.aws_trace_header),
                record=record,
            )
            writes = list(work(message) or ())
            if len(writes) >= MAX_TRANSACTION_ACTIONS:
                raise ValueError(f"{len(writes)} writes returned; at most {MAX_TRANSACTION_ACTIONS - 1}")
            self._complete(claim, writes)
        except ClaimLost:
            raise
        except Exception as exc:
            self._give_back(claim, f"{type(exc).__name__}: {exc}")
            raise
        return Consumed.COMPLETED

    def _body(self, record: SQSRecord) -> str:
        """The record's body, or the payload its pointer names (marked as the extended clients mark one:
        by the size attribute, which ingest refuses as a caller's attribute name)."""
        obj = is_pointer_body(record.body, _message_attributes(record))
        if obj is None:
            return record.body
        if self._payloads_bucket is not None and obj.bucket != self._payloads_bucket:
            raise PayloadUnreadable(f"the pointer names bucket {obj.bucket!r}, not {self._payloads_bucket!r}")
        payload = read_payload(self._s3(), obj)
        if payload is None:
            raise PayloadUnreadable(f"the payload object {obj.uri} is gone (expired or deleted)")
        return payload

    def _claim(self, claim: Claim) -> dict[str, Any] | None:
        """The claimed item, or None for a duplicate (already COMPLETED)."""
        try:
            response = self._client.update_item(
                **claim_update(claim, messages_table=self._table, now=self._now(), retention=self._retention)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            status = old.get("status", {}).get("S")
            if status == Status.COMPLETED:
                logger.info(
                    "duplicate delivery of a completed message acknowledged", message_id=claim.message_id
                )
                return None
            if status is None:
                raise NotClaimed(f"message {claim.message_id}: no such message in {self._table}") from None
            raise NotClaimed(f"message {claim.message_id} is {status}: delivered again later") from None
        return dict(response.get("Attributes", {}))

    def _complete(self, claim: Claim, writes: list[TransactWriteItemTypeDef]) -> None:
        action = complete_action(
            claim, messages_table=self._table, now=self._now(), retention=self._retention
        )
        try:
            transact(self._client, [action, *writes])
        except TransactionCancelled as cancelled:
            if cancelled.reason_at(0).condition_failed:
                raise ClaimLost(f"message {claim.message_id}: the claim ran out and was taken over") from None
            raise

    def _give_back(self, claim: Claim, error: str) -> None:
        """Back to QUEUED with the error; if the claim was lost meanwhile there is nothing of ours to undo."""
        try:
            self._client.update_item(
                **give_back_update(
                    claim, messages_table=self._table, error=error, now=self._now(), retention=self._retention
                )
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            logger.warning("failed message was taken over meanwhile", message_id=claim.message_id)


def _message_attributes(record: SQSRecord) -> dict[str, dict[str, Any]]:
    """The record's message attributes as Lambda sends them (`stringValue`, `dataType`)."""
    attributes = record.raw_event.get("messageAttributes")
    return dict(attributes) if isinstance(attributes, dict) else {}


def _message_id(record: SQSRecord) -> str:
    value = _message_attributes(record).get(MESSAGE_ID_ATTRIBUTE, {}).get("stringValue")
    if not isinstance(value, str) or not value:
        raise NotClaimed(f"SQS message {record.message_id} has no {MESSAGE_ID_ATTRIBUTE} attribute")
    return value

"""The example consumer (`outbox.consumer.example.handler`): an SQS-triggered function that only marks
each message COMPLETED, through the consumer helper (ADR 0019). `outbox serve` runs it by default so that
a local walkthrough shows PENDING → QUEUED → PROCESSING → COMPLETED; copy it as the shape of your own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from outbox.consumer.processor import ConsumedMessage, OutboxConsumer
from outbox.core.clients import dynamodb_client
from outbox.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

PROCESSING_SECONDS: Final = 60
"""At least the function's timeout (the construct gives the example consumer 30 s)."""

logger = Logger(service="outbox-example-consumer")
tracer = Tracer(service="outbox-example-consumer")
"""X-Ray (ADR 0021): off outside Lambda. Each record's work is a subsegment annotated with its
`message_id`; the trace the POST started reaches the consumer as the record's `AWSTraceHeader`, which
Lambda links to this invocation's trace."""


@functools.lru_cache(maxsize=1)
def _consumer() -> OutboxConsumer:
    settings = Settings.from_env()
    return OutboxConsumer(
        dynamodb_client(),
        messages_table=settings.messages_table,
        processing_seconds=PROCESSING_SECONDS,
        retention_days=settings.retention_days,
        payloads_bucket=settings.payloads_bucket,
    )


@tracer.capture_method(capture_response=False)
def work(message: ConsumedMessage) -> Sequence[TransactWriteItemTypeDef]:
    """Nothing to do but say so: the message is COMPLETED with no writes of its own."""
    tracer.put_annotation(key="message_id", value=message.message_id)
    logger.info(
        "consumed",
        message_id=message.message_id,
        receive_count=message.receive_count,
        trace_header=message.trace_header,  # the POST's trace, continued (ADR 0021)
    )
    return ()


@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=_consumer().record_handler(work), processor=processor, context=context
    )
    return dict(response)

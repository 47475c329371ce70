"""`outbox init`: create the tables (messages, outbox, payloads) and the queue with its dead-letter queue,
wherever the AWS endpoint points, from the same definitions the CDK stack uses. Running it again changes
nothing."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from outbox.core.schema import (
    DLQ_MAX_RECEIVE_COUNT,
    DLQ_SUFFIX,
    FIFO_SUFFIX,
    QUEUE_MAX_MESSAGE_BYTES,
    TTL_ATTRIBUTE,
    messages_table_definition,
    outbox_table_definition,
    payloads_table_definition,
)
from outbox.core.sqs_errors import sqs_error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

DEFAULT_PREFIX: Final = "outbox"
QUEUE_RETENTION_SECONDS: Final = 14 * 24 * 3600
MAX_PREFIX_LENGTH: Final = 80 - len(f"-queue{DLQ_SUFFIX}{FIFO_SUFFIX}")
"""SQS queue names have at most 80 characters; the longest name made from a prefix is the FIFO DLQ's."""
_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
"""Characters both DynamoDB table names and SQS queue names allow (tables also allow '.', queues do not)."""
EMULATOR_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
"""What `serve`, and `init` against an emulator on this machine, use when no credentials are configured:
an emulator accepts any. Never used for any other endpoint."""
EMULATOR_REGION: Final = "us-east-1"
EMULATOR_ENVIRONMENT: Final = {
    **EMULATOR_CREDENTIALS,
    "AWS_DEFAULT_REGION": EMULATOR_REGION,
    "AWS_REGION": EMULATOR_REGION,
}


@dataclass(frozen=True, slots=True)
class Resources:
    messages_table: str
    outbox_table: str
    queue_url: str
    dlq_url: str
    payloads_table: str | None = None

    def environment(self) -> dict[str, str]:
        payloads = {"PAYLOADS_TABLE": self.payloads_table} if self.payloads_table else {}
        return {
            "MESSAGES_TABLE": self.messages_table,
            "OUTBOX_TABLE": self.outbox_table,
            **payloads,
            "QUEUE_URL": self.queue_url,
            "DLQ_URL": self.dlq_url,  # `outbox dlq` (not a function setting)
        }


def prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot name the tables and queues, or None when it can."""
    if not _PREFIX_PATTERN.fullmatch(prefix):
        return "use only letters, digits, '-' and '_'"
    if len(prefix) > MAX_PREFIX_LENGTH:
        return f"use at most {MAX_PREFIX_LENGTH} characters (SQS queue names end at 80)"
    return None


def is_emulator_endpoint(endpoint_url: str | None) -> bool:
    """True for an endpoint on this machine (localhost, 127.0.0.0/8, ::1): an emulator, never AWS."""
    if not endpoint_url:
        return False
    host = (urlsplit(endpoint_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provision(
    dynamodb: DynamoDBClient, sqs: SQSClient, *, prefix: str = DEFAULT_PREFIX, fifo: bool = False
) -> Resources:
    messages_table = f"{prefix}-messages"
    outbox_table = f"{prefix}-outbox"
    _ensure_table(dynamodb, messages_table_definition(messages_table))
    _ensure_table(dynamodb, outbox_table_definition(outbox_table))
    _ensure_stream(dynamodb, outbox_table_definition(outbox_table))
    _ensure_ttl(dynamodb, messages_table)
    payloads_table = f"{prefix}-payloads"
    _ensure_table(dynamodb, payloads_table_definition(payloads_table))
    _ensure_ttl(dynamodb, payloads_table)
    queue_name = f"{prefix}-queue{FIFO_SUFFIX if fifo else ''}"
    dlq_name = f"{prefix}-queue{DLQ_SUFFIX}{FIFO_SUFFIX if fifo else ''}"
    dlq_url = _ensure_queue(sqs, dlq_name, fifo=fifo, extra={})
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": DLQ_MAX_RECEIVE_COUNT})
    queue_url = _ensure_queue(sqs, queue_name, fifo=fifo, extra={"RedrivePolicy": redrive})
    return Resources(messages_table, outbox_table, queue_url, dlq_url, payloads_table)


def _ensure_table(dynamodb: DynamoDBClient, definition: dict[str, Any]) -> None:
    name = definition["TableName"]
    try:
        dynamodb.create_table(**definition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def _ensure_stream(dynamodb: DynamoDBClient, definition: dict[str, Any]) -> None:
    """An Outbox table made before the doorbell (ADR 0017) has no stream: turn it on, as the definition
    says. A table that already streams is left as it is (DynamoDB refuses to enable a second stream)."""
    name = definition["TableName"]
    wanted = definition["StreamSpecification"]
    current = dynamodb.describe_table(TableName=name)["Table"].get("StreamSpecification", {})
    if current.get("StreamEnabled"):
        return
    dynamodb.update_table(TableName=name, StreamSpecification=wanted)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def _ensure_ttl(dynamodb: DynamoDBClient, table: str) -> None:
    current = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
        return
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


def _ensure_queue(sqs: SQSClient, name: str, *, fifo: bool, extra: dict[str, str]) -> str:
    attributes: dict[Any, str] = {
        "MaximumMessageSize": str(QUEUE_MAX_MESSAGE_BYTES),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
        "SqsManagedSseEnabled": "true",
        **extra,
    }
    if fifo:
        attributes["FifoQueue"] = "true"
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if sqs_error_code(exc) != "QueueDoesNotExist":  # real SQS: AWS.SimpleQueueService.NonExistentQueue
            raise
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]

"""`outbox init`: create the tables (messages, outbox, payloads) and the queue with its dead-letter queue,
and when asked the payload bucket of the S3 claim check, wherever the AWS endpoint points, from the same
definitions the CDK stack uses. Running it again changes nothing."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from outbox.core.clients import s3_client
from outbox.core.schema import (
    DLQ_MAX_RECEIVE_COUNT,
    DLQ_SUFFIX,
    FIFO_SUFFIX,
    PAYLOAD_GRACE_DAYS,
    PAYLOAD_LIFECYCLE_RULE_ID,
    QUEUE_MAX_MESSAGE_BYTES,
    S3_PAYLOAD_PREFIX,
    TTL_ATTRIBUTE,
    bucket_name_problem,
    messages_table_definition,
    outbox_table_definition,
    payloads_table_definition,
)
from outbox.core.settings import Settings
from outbox.core.sqs_errors import sqs_error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CreateBucketConfigurationTypeDef
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
_BUCKET_REGION_DEFAULT: Final = "us-east-1"
"""The one region where `CreateBucket` takes no `LocationConstraint` (S3 refuses one naming it)."""
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
    payloads_bucket: str | None = None

    def environment(self) -> dict[str, str]:
        payloads = {"PAYLOADS_TABLE": self.payloads_table} if self.payloads_table else {}
        bucket = {"PAYLOADS_BUCKET": self.payloads_bucket} if self.payloads_bucket else {}
        return {
            "MESSAGES_TABLE": self.messages_table,
            "OUTBOX_TABLE": self.outbox_table,
            **payloads,
            **bucket,
            "QUEUE_URL": self.queue_url,
            "DLQ_URL": self.dlq_url,  # `outbox dlq` (not a function setting)
        }


class BucketTaken(Exception):
    """The payload bucket's name belongs to someone else: S3 bucket names are global, across accounts."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"the S3 bucket name {bucket!r} is taken (bucket names are global across AWS accounts): "
            "choose another --prefix"
        )
        self.bucket = bucket


def payloads_bucket_name(prefix: str) -> str:
    """`<prefix>-payloads`, lower-cased and with `_` as `-` (a bucket name allows neither upper case nor
    `_`). `ValueError` when the result is still no bucket name (too long, or not starting with a letter or
    digit)."""
    name = f"{prefix}-payloads".lower().replace("_", "-")
    if problem := bucket_name_problem(name):
        raise ValueError(f"the payload bucket would be named {name!r}: {problem}")
    return name


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
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    *,
    prefix: str = DEFAULT_PREFIX,
    fifo: bool = False,
    payloads_bucket: bool = False,
    s3: S3Client | None = None,
    retention_days: int = Settings.retention_days,
) -> Resources:
    """Create what is missing. `payloads_bucket`: also the S3 claim check's bucket (ADR 0023),
    `payloads_bucket_name(prefix)`, through `s3` (by default the outbox's client), its objects expiring
    `retention_days` + `PAYLOAD_GRACE_DAYS` after they were written, as the stack's. Off by default: a
    bucket name is global, and a test or a local run needs none. `ValueError` for a prefix that makes no
    bucket name, `BucketTaken` for a name another account holds."""
    bucket = payloads_bucket_name(prefix) if payloads_bucket else None
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
    if bucket is not None:
        _ensure_bucket(s3 or s3_client(), bucket, expire_days=retention_days + PAYLOAD_GRACE_DAYS)
    return Resources(messages_table, outbox_table, queue_url, dlq_url, payloads_table, bucket)


def _ensure_bucket(s3: S3Client, bucket: str, *, expire_days: int) -> None:
    """The payload bucket as `outbox.cdk.payload_bucket.PayloadBucket` builds it, as far as the parts the
    outbox relies on go: private, objects under the prefix expiring. (S3 encrypts new objects with SSE-S3
    by default and disables ACLs on new buckets; TLS-only and access logs are the stack's.)"""
    region = s3.meta.region_name or _BUCKET_REGION_DEFAULT
    try:
        if region == _BUCKET_REGION_DEFAULT:
            s3.create_bucket(Bucket=bucket)
        else:
            # A region newer than the type stubs' list is still a region.
            configuration = cast("CreateBucketConfigurationTypeDef", {"LocationConstraint": region})
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=configuration)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "BucketAlreadyExists":
            raise BucketTaken(bucket) from None
        if code != "BucketAlreadyOwnedByYou":
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": PAYLOAD_LIFECYCLE_RULE_ID,
                    "Filter": {"Prefix": S3_PAYLOAD_PREFIX},
                    "Status": "Enabled",
                    "Expiration": {"Days": expire_days},
                }
            ]
        },
    )


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

"""Names and shapes of the two tables and the queue, in one place.

`outbox init`, the CDK stack and the tests all build their tables from these constants, so a key
renamed here is renamed everywhere at once.
"""

from __future__ import annotations

import re
from typing import Final

# Messages table: one item per accepted message.
MESSAGE_KEY: Final = "message_id"
FAILED_INDEX: Final = "failed"
"""Sparse global secondary index keyed on `failed_at`, which only FAILED items carry: scanning it
lists the failed messages without scanning the table."""
FAILED_INDEX_KEY: Final = "failed_at"
TTL_ATTRIBUTE: Final = "expires_at"

# Payloads table: a payload too large to ride in its message item, written once (ADR 0023).
PAYLOAD_KEY: Final = "payload_id"

PAYLOAD_GRACE_DAYS: Final = 28
"""A payload stored apart (an item of the Payloads table, or an S3 object) outlives its message's retention
by this much: SQS keeps a message 14 days at most, and its dead-letter queue 14 more (ADR 0023)."""

# S3 claim check: payloads beyond what a DynamoDB item holds.
S3_PAYLOAD_PREFIX: Final = "payloads/"
"""Every payload object's key starts with it; the IAM grants and the lifecycle rule are scoped to it."""
PAYLOAD_LIFECYCLE_RULE_ID: Final = "ExpireClaimCheckPayloads"
"""The payload bucket's one lifecycle rule (the stack's and `outbox init`'s): objects under the prefix
expire `RETENTION_DAYS + PAYLOAD_GRACE_DAYS` after they were written."""
_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

EXTENDED_PAYLOAD_SIZE_ATTRIBUTE: Final = "ExtendedPayloadSize"
"""The reserved attribute of the AWS SQS Extended Client libraries: the payload's size in UTF-8 bytes,
`DataType` `Number`; its presence marks a message body as a pointer to an S3 object."""
LEGACY_PAYLOAD_SIZE_ATTRIBUTE: Final = "SQSLargePayloadSize"
"""The older name of the same attribute, still written by default by the Java library and read by all."""
EXTENDED_CLIENT_ATTRIBUTES: Final = frozenset(
    {EXTENDED_PAYLOAD_SIZE_ATTRIBUTE, LEGACY_PAYLOAD_SIZE_ATTRIBUTE}
)

# Outbox table: small entries, partitioned by shard, ordered by a time-ordered entry id.
OUTBOX_PARTITION_KEY: Final = "shard"
OUTBOX_SORT_KEY: Final = "entry_id"
OUTBOX_STREAM_VIEW: Final = "KEYS_ONLY"
"""The Outbox table's stream is the relay's doorbell (ADR 0017): a record needs only the key, whose
partition is the shard to relay; the cheapest view, and no payload ever leaves the table through it."""

# SQS.
QUEUE_MAX_MESSAGE_BYTES: Final = 1_048_576
"""The queue is created with SQS's largest maximum message size (1 MiB)."""
DLQ_MAX_RECEIVE_COUNT: Final = 5
DLQ_SUFFIX: Final = "-dlq"
FIFO_SUFFIX: Final = ".fifo"


def messages_table_definition(table_name: str) -> dict[str, object]:
    """`CreateTable` arguments for the Messages table (on-demand)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": MESSAGE_KEY, "AttributeType": "S"},
            {"AttributeName": FAILED_INDEX_KEY, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": MESSAGE_KEY, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": FAILED_INDEX,
                "KeySchema": [{"AttributeName": FAILED_INDEX_KEY, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


def payloads_table_definition(table_name: str) -> dict[str, object]:
    """`CreateTable` arguments for the Payloads table (on-demand; its TTL is `TTL_ATTRIBUTE`)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": PAYLOAD_KEY, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": PAYLOAD_KEY, "KeyType": "HASH"}],
    }


def outbox_table_definition(table_name: str) -> dict[str, object]:
    """`CreateTable` arguments for the Outbox table (on-demand, with its doorbell stream)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": OUTBOX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": OUTBOX_SORT_KEY, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": OUTBOX_PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": OUTBOX_SORT_KEY, "KeyType": "RANGE"},
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": OUTBOX_STREAM_VIEW},
    }


def bucket_name_problem(name: str) -> str | None:
    """Why `name` cannot name the payload bucket, or None when it can: S3's rules for new buckets (3-63
    lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, no '..')."""
    if not _BUCKET_NAME.fullmatch(name) or ".." in name:
        return (
            "an S3 bucket name is 3-63 lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def is_fifo_queue(queue_url: str) -> bool:
    """SQS requires FIFO queue names to end in `.fifo`, so the URL tells."""
    return queue_url.endswith(FIFO_SUFFIX)

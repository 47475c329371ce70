"""DynamoDB's TTL sweeper, for emulators that never run one (moto keeps expired items for ever).

DynamoDB's documented rule (UpdateTimeToLive, API reference): an item whose TTL attribute holds a Number
of epoch seconds *less than* the current time is expired and, some time later (typically within two
days), deleted; an item without the attribute, or with a non-Number one, is never expired. `sweep_expired`
applies that rule at a moment the caller chooses, so a test can move the clock by weeks and see what a
real table would have lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from outbox.core.schema import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def sweep_expired(
    dynamodb: DynamoDBClient, table: str, *, now: datetime, attribute: str = TTL_ATTRIBUTE
) -> list[dict[str, object]]:
    """Delete every item of `table` that DynamoDB's TTL would have deleted by `now`; returns them."""
    key_names = [
        part["AttributeName"] for part in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    ]
    cutoff = now.timestamp()
    expired: list[dict[str, object]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page.get("Items", []):
            value = item.get(attribute, {})
            if "N" in value and float(value["N"]) < cutoff:
                dynamodb.delete_item(TableName=table, Key={name: item[name] for name in key_names})
                expired.append(dict(item))
    return expired

"""The team's own handler: an order and its outbox message, committed together or not at all."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

from outbox import Settings, outbox_write

_settings = Settings.from_env()  # MESSAGES_TABLE, OUTBOX_TABLE, QUEUE_URL, ... from outbox.environment
_dynamodb = boto3.client("dynamodb")


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    order = json.loads(event["body"])
    write = outbox_write(
        {"event": "order-placed", "order_id": order["order_id"]},
        settings=_settings,
        idempotency_key=f"order-{order['order_id']}",
    )
    items = [
        {
            "Put": {
                "TableName": os.environ["ORDERS_TABLE"],
                "Item": {"order_id": {"S": order["order_id"]}},
                "ConditionExpression": "attribute_not_exists(order_id)",
            }
        },
        *write.items,
    ]
    try:
        _dynamodb.transact_write_items(TransactItems=items)
    except ClientError as exc:
        why = write.explain(exc, items)
        if not why.outbox_replay:  # a replay: this order was placed before; answer as then
            return {"statusCode": 409, "body": json.dumps({"error": why.summary})}
    return {"statusCode": 202, "body": json.dumps({"message_id": write.message_id})}

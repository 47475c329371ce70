"""`outbox demo`: the whole ingest path on an embedded emulator, with no AWS account.

Starts a serialized moto server, provisions the tables and queue, sends messages through the real
`outbox.ingest.handler` as HTTP API events, and reads back what DynamoDB stored. (The relay half joins
this demo when the relay lands.)
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from unittest import mock

from rich.console import Console
from rich.table import Table

from outbox.clients import dynamodb_client, reset_clients, sqs_client
from outbox.local.emulator import DUMMY_CREDENTIALS, embedded_aws
from outbox.local.events import http_api_event, local_context
from outbox.provisioning import provision


def run_demo(console: Console, *, messages: int, fifo: bool) -> int:
    """Returns the exit code: 0 when every message was accepted and stored PENDING with its entry."""
    started = time.perf_counter()
    with (
        embedded_aws() as aws,
        mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint_url}),
    ):
        reset_clients()
        try:
            resources = provision(dynamodb_client(), sqs_client(), prefix="demo", fifo=fifo)
            console.print(f"[bold]Embedded AWS[/] at {aws.endpoint_url}; queue {resources.queue_url}")
            quiet = {**resources.environment(), "POWERTOOLS_LOG_LEVEL": "WARNING"}
            with mock.patch.dict(os.environ, quiet):
                return _ingest_and_show(console, messages=messages, fifo=fifo, started=started)
        finally:
            reset_clients()


def _ingest_and_show(console: Console, *, messages: int, fifo: bool, started: float) -> int:
    from outbox import ingest  # noqa: PLC0415 - loads Powertools only for this run

    ingest._settings.cache_clear()
    context = local_context()
    table = Table(title="Accepted messages, as stored in DynamoDB")
    for column in ("message_id", "HTTP", "status", "shard", "payload"):
        table.add_column(column)
    statuses: Counter[str] = Counter()
    for number in range(1, messages + 1):
        body: dict[str, object] = {"payload": {"order": number, "item": "book"}}
        if fifo:
            body["group_id"] = f"customer-{number % 3}"
        response = ingest.handler(
            http_api_event(
                "POST", "/messages", body=json.dumps(body), headers={"Idempotency-Key": f"demo-{number}"}
            ),
            context,
        )
        accepted = json.loads(response["body"])
        status = ingest.handler(
            http_api_event("GET", f"/messages/{accepted['message_id']}", query={"include": "payload"}),
            context,
        )
        record = json.loads(status["body"])
        stored = dynamodb_client().get_item(
            TableName=os.environ["MESSAGES_TABLE"], Key={"message_id": {"S": accepted["message_id"]}}
        )["Item"]
        statuses[record["status"]] += 1
        table.add_row(
            accepted["message_id"],
            str(response["statusCode"]),
            record["status"],
            stored["shard"]["S"],
            json.dumps(record["payload"]),
        )
    entries = dynamodb_client().scan(TableName=os.environ["OUTBOX_TABLE"], Select="COUNT")["Count"]
    console.print(table)
    console.print(
        f"accepted {messages}, stored {dict(statuses)}, outbox entries {entries}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0 if statuses["PENDING"] == messages and entries == messages else 1

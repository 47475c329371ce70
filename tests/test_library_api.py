"""The library API: outbox actions inside a caller's own transaction commit or roll back with it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outbox import InvalidRequest, Settings, Status, enqueue, outbox_write
from outbox.core.clients import dynamodb_client
from tests.conftest import Outbox


@pytest.fixture
def orders_table(outbox: Outbox) -> str:
    dynamodb_client().create_table(
        TableName="orders",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
    )
    return "orders"


def _place_order(orders_table: str, outbox: Outbox, order_id: str) -> str:
    write = outbox_write({"event": "order-placed", "order_id": order_id}, settings=outbox.settings)
    dynamodb_client().transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": orders_table,
                    "Item": {"order_id": {"S": order_id}},
                    "ConditionExpression": "attribute_not_exists(order_id)",
                }
            },
            *write.items,
        ]
    )
    return write.message_id


def test_business_write_and_outbox_commit_together(outbox: Outbox, orders_table: str) -> None:
    message_id = _place_order(orders_table, outbox, "o-1")

    message = outbox.message(message_id)
    assert message is not None
    assert message["status"] == {"S": Status.PENDING}
    assert json.loads(message["payload"]["S"]) == {"event": "order-placed", "order_id": "o-1"}
    assert [entry["message_id"]["S"] for entry in outbox.entries()] == [message_id]


def test_a_failed_business_write_takes_the_outbox_write_with_it(outbox: Outbox, orders_table: str) -> None:
    _place_order(orders_table, outbox, "o-1")

    with pytest.raises(ClientError) as caught:
        _place_order(orders_table, outbox, "o-1")  # the order exists: its condition fails

    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert outbox.counts() == (1, 1)  # only the first order's message and entry


def _readme_example(settings: Settings, order_id: str, event: str = "order-placed") -> str:
    """The README's library example, as written there (`dynamodb` is the caller's client)."""
    dynamodb = dynamodb_client()
    write = outbox_write(
        {"event": event, "order_id": order_id}, settings=settings, idempotency_key=f"order-{order_id}"
    )
    items: list[Any] = [
        {
            "Put": {
                "TableName": "orders",
                "Item": {"order_id": {"S": order_id}},
                "ConditionExpression": "attribute_not_exists(order_id)",
            }
        },
        *write.items,  # message Put + outbox entry Put: commit or roll back with your write
    ]
    try:
        dynamodb.transact_write_items(TransactItems=items)
    except ClientError as exc:
        why = write.explain(exc, items)  # whose item failed, and what it means
        if not why.outbox_replay:  # a replay: this request committed before; nothing to do
            raise RuntimeError(why.summary) from exc
    return write.message_id


def test_the_readme_example_tells_a_replay_from_a_conflict(outbox: Outbox, orders_table: str) -> None:
    first = _readme_example(outbox.settings, "o-1")
    again = _readme_example(outbox.settings, "o-1")  # the caller retried after a lost response
    with pytest.raises(RuntimeError, match=r"^idempotency conflict: idempotency key 'order-o-1'"):
        _readme_example(outbox.settings, "o-1", event="order-cancelled")

    assert first == again
    assert outbox.counts() == (1, 1)


def test_outbox_write_checks_the_message_before_anything_is_written(outbox: Outbox) -> None:
    with pytest.raises(InvalidRequest) as caught:
        outbox_write(float("nan"), settings=outbox.settings)
    assert caught.value.code == "invalid_number"
    with pytest.raises(InvalidRequest):
        outbox_write({"x": {1, 2}}, settings=outbox.settings)  # a set is not JSON
    assert outbox.counts() == (0, 0)


def test_enqueue_runs_alone_and_is_idempotent(outbox: Outbox) -> None:
    first = enqueue({"n": 1}, settings=outbox.settings, idempotency_key="k-1")
    again = enqueue({"n": 1}, settings=outbox.settings, idempotency_key="k-1")

    assert (first.replayed, again.replayed) == (False, True)
    assert first.message_id == again.message_id
    assert outbox.counts() == (1, 1)


def test_every_public_name_resolves() -> None:
    import outbox  # noqa: PLC0415 - the package's lazy exports are the subject

    assert all(getattr(outbox, name) is not None for name in outbox.__all__)
    with pytest.raises(AttributeError):
        _ = outbox.no_such_name


def test_the_relay_handler_imports_neither_boto3_nor_the_ingest_path() -> None:
    """What a relay cold start imports (bench/startup.py times it; this keeps the module set honest)."""
    script = "import sys, relay.handler; print(' '.join(sorted(sys.modules)))"
    modules = set(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "relay.handler" in modules
    assert not modules & {
        "boto3",
        "s3transfer",
        "outbox.api",
        "outbox.ingest.service",
        "outbox.ingest.handler",
    }

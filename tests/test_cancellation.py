"""Explaining a cancelled caller transaction that held an outbox write (`outbox.explain_cancellation`),
against moto in-process, which returns `CancellationReasons` (and the stored item for `ALL_OLD`)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from outbox import (
    CancellationExplanation,
    CancellationKind,
    ItemFailure,
    OutboxWrite,
    explain_cancellation,
    outbox_write,
)
from outbox.core.clients import dynamodb_client
from tests.conftest import Outbox

ORDERS = "orders"


@pytest.fixture
def orders(outbox: Outbox) -> Outbox:
    dynamodb_client().create_table(
        TableName=ORDERS,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
    )
    return outbox


def _order_put(order_id: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": ORDERS,
            "Item": {"order_id": {"S": order_id}},
            "ConditionExpression": "attribute_not_exists(order_id)",
        }
    }


def _place(
    outbox: Outbox, order_id: str, *, key: str | None = None, body: str = "placed"
) -> tuple[OutboxWrite, list[Any], ClientError | None]:
    """The README's shape: the caller's Put, then the outbox's items, in one transaction."""
    write = outbox_write({"event": body, "order_id": order_id}, settings=outbox.settings, idempotency_key=key)
    items = [_order_put(order_id), *write.items]
    try:
        dynamodb_client().transact_write_items(TransactItems=items)
    except ClientError as exc:
        return write, items, exc
    return write, items, None


def _cancelled(outbox: Outbox, order_id: str, **options: Any) -> tuple[OutboxWrite, list[Any], ClientError]:
    write, items, error = _place(outbox, order_id, **options)
    assert error is not None, "the transaction should have been cancelled"
    assert error.response["Error"]["Code"] == "TransactionCanceledException"
    return write, items, error


def test_only_the_callers_condition_failed(orders: Outbox) -> None:
    _place(orders, "o-1")
    write, items, error = _cancelled(orders, "o-1")  # no key: a fresh message id; the order exists

    why = write.explain(error, items)

    assert why.kind is CancellationKind.CALLER
    assert why.caused_by_caller
    assert not why.caused_by_outbox
    assert not why.outbox_replay
    assert not why.retryable
    assert why.caller_failures == (ItemFailure(0, "ConditionalCheckFailed", why.caller_failures[0].message),)
    assert why.outbox_failures == ()
    assert why.message_id == write.message_id
    assert str(why) == why.summary == "your own items failed, not the outbox's: #0 ConditionalCheckFailed"
    assert orders.counts() == (1, 1)


def test_the_same_keyed_request_again_is_a_replay(orders: Outbox) -> None:
    first, _, error = _place(orders, "o-1", key="order-o-1")
    assert error is None
    again, items, error = _cancelled(orders, "o-1", key="order-o-1")  # a client retrying the same request

    why = again.explain(error, items)

    assert again.message_id == first.message_id
    assert why.kind is CancellationKind.REPLAY
    assert why.outbox_replay
    assert why.caused_by_outbox
    assert [failure.index for failure in why.outbox_failures] == [1]
    assert why.existing_message is not None
    assert why.existing_message["request_hash"]["S"] == first.request_hash
    assert why.summary.startswith("replay: idempotency key 'order-o-1' was used by an earlier")
    # The caller's Put failed as well (the order exists): said, and explained by the replay.
    assert [failure.index for failure in why.caller_failures] == [0]
    assert "your own items failed too: #0 ConditionalCheckFailed" in why.summary
    assert orders.counts() == (1, 1)


def test_the_same_key_with_a_different_body_is_a_conflict(orders: Outbox) -> None:
    _place(orders, "o-1", key="order-o-1")
    write, items, error = _cancelled(orders, "o-1", key="order-o-1", body="cancelled")

    why = explain_cancellation(error, items, write)

    assert why.kind is CancellationKind.IDEMPOTENCY_CONFLICT
    assert why.idempotency_conflict
    assert not why.outbox_replay
    assert not why.retryable
    assert why.summary.startswith("idempotency conflict: idempotency key 'order-o-1'")
    assert why.summary.endswith(
        "with a different request (your own items failed too: #0 ConditionalCheckFailed)"
    )


def test_only_the_outbox_failing_is_said_to_be_the_outbox(orders: Outbox) -> None:
    _place(orders, "o-1", key="k")
    write, items, error = _cancelled(orders, "o-2", key="k")  # a new order, a reused key

    why = write.explain(error, items)

    assert why.kind is CancellationKind.IDEMPOTENCY_CONFLICT
    assert why.caller_failures == ()
    assert "your own" not in why.summary
    assert orders.counts() == (1, 1)


def test_the_outbox_items_are_found_wherever_they_were_put(orders: Outbox) -> None:
    _place(orders, "o-1", key="k")
    write = outbox_write(
        {"event": "placed", "order_id": "o-1"}, settings=orders.settings, idempotency_key="k"
    )
    items: list[Any] = [*write.items, _order_put("o-1"), _order_put("o-9")]
    with pytest.raises(ClientError) as caught:
        dynamodb_client().transact_write_items(TransactItems=items)

    by_identity = write.explain(caught.value, items)
    copies = [dict(item) for item in items]  # equal, not the same objects: found by equality
    by_equality = write.explain(caught.value, copies)
    by_offset = write.explain(caught.value, offset=0)

    assert by_identity == by_equality == by_offset
    assert by_identity.kind is CancellationKind.REPLAY
    assert [failure.index for failure in by_identity.outbox_failures] == [0]
    assert [failure.index for failure in by_identity.caller_failures] == [2]


def test_a_client_error_that_is_not_a_cancellation(orders: Outbox) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings)
    items = [*write.items, *write.items]  # two operations on one item: refused, not cancelled
    with pytest.raises(ClientError) as caught:
        dynamodb_client().transact_write_items(TransactItems=items)

    why = write.explain(caught.value, items)

    assert why.kind is CancellationKind.NOT_CANCELLED
    assert why.error_code == "ValidationException"
    assert why.summary.startswith("not a cancellation: ValidationException: ")
    assert not why.caused_by_outbox
    assert not why.caused_by_caller
    assert not why.retryable


def test_the_summary_is_one_line(orders: Outbox) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings)
    error = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded\nslow down " + "x" * 500}},
        "TransactWriteItems",
    )

    why = write.explain(error, offset=0)

    assert why.kind is CancellationKind.NOT_CANCELLED
    assert why.summary.startswith("not a cancellation: ThrottlingException: Rate exceeded slow down x")
    assert "\n" not in why.summary
    assert len(why.summary) < 300


def test_misuse_is_an_error_but_reasons_never_are(orders: Outbox) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings)
    with pytest.raises(TypeError, match="ClientError"):
        write.explain("TransactionCanceledException", offset=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset="):
        write.explain([])
    with pytest.raises(ValueError, match="not in these TransactItems"):
        write.explain([], [_order_put("o-1")])
    with pytest.raises(ValueError, match="offset"):
        write.explain([], offset=-1)


def _explain(write: OutboxWrite, error: Any, offset: int = 1) -> CancellationExplanation:
    return write.explain(error, offset=offset)


@pytest.mark.parametrize(
    "error",
    [
        [],
        ["ConditionalCheckFailed"],  # shorter than the transaction
        [None, None],
        [42, object(), {"Code": 7}, {"Message": "no code"}, {"Code": "None"}],
        {"Error": {"Code": "TransactionCanceledException"}},  # no reasons at all
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled [ ,, ]"}},
        {"Error": "not a mapping", "CancellationReasons": "nor a list"},
        {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": [{"Code": None}] * 5},
        {},
    ],
)
def test_malformed_or_short_reasons_are_explained_not_raised(orders: Outbox, error: Any) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings, idempotency_key="k")

    why = _explain(write, error)

    assert isinstance(why, CancellationExplanation)
    assert why.kind in {CancellationKind.UNEXPLAINED, CancellationKind.CALLER, CancellationKind.NOT_CANCELLED}
    assert why.summary
    assert "\n" not in why.summary


def test_reasons_read_from_the_message_when_the_list_is_missing(orders: Outbox) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings, idempotency_key="k")
    response = {
        "Error": {
            "Code": "TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
            "[None, ConditionalCheckFailed, None]",
        }
    }

    why = _explain(write, ClientError(response, "TransactWriteItems"))  # type: ignore[arg-type]

    # The message Put failed, but without the stored item a replay cannot be told from a conflict.
    assert why.kind is CancellationKind.MESSAGE_EXISTS
    assert "returned no stored message" in why.summary
    assert why.existing_message is None


@pytest.mark.parametrize(
    ("reasons", "kind", "retryable"),
    [
        (["None", "None", "ConditionalCheckFailed"], CancellationKind.ENTRY_EXISTS, False),
        (["None", "TransactionConflict", "None"], CancellationKind.OUTBOX_CONFLICT, True),
        (["TransactionConflict", "None", "None"], CancellationKind.CALLER, True),
        (["TransactionConflict", "None", "ThrottlingError"], CancellationKind.OUTBOX_CONFLICT, True),
        (["ConditionalCheckFailed", "TransactionConflict", "None"], CancellationKind.CALLER, False),
        (["TransactionConflict", "TransactionConflict", "None"], CancellationKind.OUTBOX_CONFLICT, True),
        (["None", "ValidationError", "None"], CancellationKind.OUTBOX_REFUSED, False),
        (["None", "None", "None"], CancellationKind.UNEXPLAINED, False),
    ],
)
def test_each_kind_of_reason(
    orders: Outbox, reasons: list[str], kind: CancellationKind, retryable: bool
) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings)

    why = _explain(write, [{"Code": code} for code in reasons])

    assert (why.kind, why.retryable) == (kind, retryable)


def test_a_message_without_a_key_that_exists_should_not_happen(orders: Outbox) -> None:
    write = outbox_write({"n": 1}, settings=orders.settings)

    why = write.explain(["ConditionalCheckFailed", "None"], offset=0)

    assert why.kind is CancellationKind.MESSAGE_EXISTS
    assert "should not happen" in why.summary

"""Ingest retries and `ClientRequestToken` (issue 12, item 2; ADR 0003).

DynamoDB documents that a token stands for the outcome of the first request that used it for 10 minutes
and does not promise that a *cancelled* first use lets an identical retry run. `TokenMemory` models that
reading on the moto server (moto ignores tokens): under it, a retry that reuses a cancelled attempt's token
is cancelled again, forever. The ingest path therefore sends each attempt after a cancellation under a new
token, while botocore's resends within one attempt (a lost response, a 5xx) keep it.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from outbox.core.clients import dynamodb_client
from outbox.data.transactions import CLIENT_REQUEST_TOKEN_LENGTH, client_request_token
from outbox.testing.faults import FaultInjector, FaultKind
from outbox.testing.request_tokens import TOKEN_WINDOW_SECONDS, TokenMemory
from tests.conftest import Outbox, call_ingest


@pytest.mark.parametrize("key", [None, "order-7"])
def test_a_retry_after_a_cancellation_runs_under_a_new_token(
    server_outbox: Outbox, sent_tokens: list[str], key: str | None
) -> None:
    faults = FaultInjector(dynamodb_client()).add("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT)
    memory = TokenMemory(dynamodb_client())
    headers = {"Idempotency-Key": key} if key else {}

    status, body, _ = call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers)

    assert faults.injected[("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT)] == 1
    assert (status, body.get("status")) == (202, "PENDING")
    assert server_outbox.counts() == (1, 1)
    assert server_outbox.messages()[0]["message_id"] == {"S": body["message_id"]}
    assert len(sent_tokens) == 2
    assert sent_tokens[0] != sent_tokens[1]  # reusing the cancelled one would be cancelled again ...
    assert memory.replayed["cancelled"] == 0  # ... and was not tried
    assert all(1 <= len(token) <= CLIENT_REQUEST_TOKEN_LENGTH for token in sent_tokens)


def test_every_attempt_of_a_lasting_conflict_has_its_own_token_and_nothing_is_written(
    server_outbox: Outbox, sent_tokens: list[str]
) -> None:
    FaultInjector(dynamodb_client()).add("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT, times=None)

    status, body, _ = call_ingest("POST", "/messages", {"payload": 1})

    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    assert len(sent_tokens) == 4  # TransactionRetryPolicy.attempts
    assert len(set(sent_tokens)) == 4
    assert server_outbox.counts() == (0, 0)


@pytest.mark.parametrize("fault", [FaultKind.LOST_RESPONSE, FaultKind.SERVER_ERROR, FaultKind.THROTTLE])
def test_a_resend_after_a_transport_error_or_5xx_keeps_the_token(
    server_outbox: Outbox, sent_tokens: list[str], fault: FaultKind
) -> None:
    """botocore resends the same request: the same token, which DynamoDB answers with the first use's
    outcome instead of running the transaction twice."""
    FaultInjector(dynamodb_client()).add("TransactWriteItems", fault)
    TokenMemory(dynamodb_client())

    status, body, _ = call_ingest("POST", "/messages", {"payload": 1}, headers={"Idempotency-Key": "k"})

    assert status in {200, 202}  # 200 after a lost response: the resend found the message written
    assert body["status"] == "PENDING"
    assert len(sent_tokens) == 2
    assert sent_tokens[0] == sent_tokens[1]
    assert server_outbox.counts() == (1, 1)


def test_the_token_of_attempt_one_is_the_items_hash_and_later_attempts_differ() -> None:
    items = [{"Put": {"TableName": "t", "Item": {"k": {"S": "v"}}}}]
    first = client_request_token(items)

    assert client_request_token(items, 1) == first  # what the relay and admin transactions send
    assert client_request_token(items, 2) == client_request_token(items, 2)  # deterministic
    assert len({first, client_request_token(items, 2), client_request_token(items, 3)}) == 3
    assert all(len(client_request_token(items, n)) == CLIENT_REQUEST_TOKEN_LENGTH for n in (1, 2, 99))


# -- the model itself: TokenMemory keeps DynamoDB's documented token rules -----------------------------


def _put(table: str, value: str, *, condition: str | None = None) -> Any:
    put: dict[str, Any] = {"TableName": table, "Item": {"message_id": {"S": "m-1"}, "v": {"S": value}}}
    if condition:
        put["ConditionExpression"] = condition
    return [{"Put": put}]


def _value(table: str) -> str:
    item = dynamodb_client().get_item(TableName=table, Key={"message_id": {"S": "m-1"}}, ConsistentRead=True)
    return str(item["Item"]["v"]["S"])


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_memory_answers_a_repeat_of_a_success_without_running_it(server_outbox: Outbox) -> None:
    table = server_outbox.resources.messages_table
    clock = _Clock()
    memory = TokenMemory(dynamodb_client(), clock=clock)
    client = dynamodb_client()
    client.transact_write_items(TransactItems=_put(table, "first"), ClientRequestToken="t-1")
    client.put_item(TableName=table, Item={"message_id": {"S": "m-1"}, "v": {"S": "changed"}})

    client.transact_write_items(TransactItems=_put(table, "first"), ClientRequestToken="t-1")
    assert (_value(table), memory.replayed["success"]) == ("changed", 1)  # not run again

    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=_put(table, "other"), ClientRequestToken="t-1")
    assert caught.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"

    clock.now += TOKEN_WINDOW_SECONDS + 1  # after 10 minutes the token is new again
    client.transact_write_items(TransactItems=_put(table, "first"), ClientRequestToken="t-1")
    assert _value(table) == "first"


def test_token_memory_answers_a_repeat_of_a_cancellation_with_the_cancellation(server_outbox: Outbox) -> None:
    table = server_outbox.resources.messages_table
    memory = TokenMemory(dynamodb_client())
    client = dynamodb_client()
    condition = "attribute_exists(message_id)"  # no item yet: cancelled

    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            client.transact_write_items(
                TransactItems=_put(table, "x", condition=condition),
                ClientRequestToken="t-2",
            )
        assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
        client.put_item(TableName=table, Item={"message_id": {"S": "m-1"}, "v": {"S": "now it exists"}})

    assert memory.replayed["cancelled"] == 1  # the second try was answered from memory, though it could pass
    assert _value(table) == "now it exists"

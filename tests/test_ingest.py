"""The ingest path against moto: what is stored, idempotency, status queries, failures that write nothing."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from outbox.core.clients import dynamodb_client
from outbox.core.domain import shard_for
from outbox.data.transactions import CLIENT_REQUEST_TOKEN_LENGTH
from outbox.ingest import handler as ingest
from outbox.testing.faults import FaultInjector, FaultKind
from tests.conftest import Outbox, call_ingest

ALICE = "arn:aws:iam::111122223333:user/alice"
ROLE_SESSION_1 = "arn:aws:sts::111122223333:assumed-role/writer/session-1"
ROLE_SESSION_2 = "arn:aws:sts::111122223333:assumed-role/writer/session-2"


def test_valid_post_stores_a_pending_message_and_one_entry_in_its_shard(outbox: Outbox) -> None:
    body = {
        "payload": {"order": 42, "lines": [1, 2.5, None, True], "note": "café"},
        "attributes": {"kind": "order"},
    }
    status, response, _ = call_ingest("POST", "/messages", body)

    assert status == 202
    assert response["status"] == "PENDING"
    message_id = response["message_id"]
    item = outbox.message(message_id)
    assert item is not None
    assert item["status"] == {"S": "PENDING"}
    assert json.loads(item["payload"]["S"]) == body["payload"]
    assert item["payload"]["S"].isascii()
    assert item["attributes"] == {"M": {"kind": {"S": "order"}}}
    assert item["principal"] == {"S": "anonymous"}
    assert "expires_at" not in item  # owed to the queue: no TTL may delete it before it is QUEUED
    entries = outbox.entries()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["message_id"] == {"S": message_id}
    assert entry["shard"] == {"S": shard_for(message_id, outbox.settings.outbox_shards)}
    assert entry["state"] == {"S": "READY"}
    assert "payload" not in entry  # the entry stays small: claims rewrite it
    assert (item["shard"], item["entry_id"]) == (entry["shard"], entry["entry_id"])


def test_fifo_message_keeps_its_group_and_lands_in_the_groups_shard(fifo_outbox: Outbox) -> None:
    ids = [
        call_ingest("POST", "/messages", {"payload": n, "group_id": "customer-7"})[1]["message_id"]
        for n in range(5)
    ]
    entries = sorted(fifo_outbox.entries(), key=lambda entry: entry["entry_id"]["S"])
    assert [entry["message_id"]["S"] for entry in entries] == ids  # sort key order is acceptance order
    assert {entry["shard"]["S"] for entry in entries} == {shard_for("customer-7", 8)}
    assert all(entry["group_id"] == {"S": "customer-7"} for entry in entries)
    assert fifo_outbox.message(ids[0])["group_id"] == {"S": "customer-7"}  # type: ignore[index]


def test_same_idempotency_key_three_times_is_one_message(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "order-42"}
    results = [call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers) for _ in range(3)]

    assert [status for status, _, _ in results] == [202, 200, 200]
    assert len({body["message_id"] for _, body, _ in results}) == 1
    assert all(body["status"] == "PENDING" for _, body, _ in results)
    assert outbox.counts() == (1, 1)


def test_same_key_with_a_different_body_is_a_conflict_and_changes_nothing(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "order-42"}
    _, first, _ = call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers)
    before = outbox.message(first["message_id"])

    status, body, _ = call_ingest("POST", "/messages", {"payload": {"n": 2}}, headers=headers)

    assert (status, body["error"]["code"], body["error"]["field"]) == (
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    assert outbox.message(first["message_id"]) == before
    assert outbox.counts() == (1, 1)


def test_replay_is_recognised_whatever_the_member_order(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "k"}
    call_ingest(
        "POST",
        "/messages",
        raw_body='{"payload": {"a": 1, "b": 2}, "attributes": {"x": "1"}}',
        headers=headers,
    )
    status, _, _ = call_ingest(
        "POST",
        "/messages",
        raw_body='{"attributes": {"x": "1"}, "payload": {"b": 2, "a": 1}}',
        headers=headers,
    )
    assert status == 200
    assert outbox.counts() == (1, 1)


def test_keys_are_scoped_to_the_caller(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    _, alice, _ = call_ingest("POST", "/messages", {"payload": 1}, headers=headers, user_arn=ALICE)
    _, anonymous, _ = call_ingest("POST", "/messages", {"payload": 2}, headers=headers)
    assert alice["message_id"] != anonymous["message_id"]
    assert outbox.counts() == (2, 2)


def test_an_assumed_role_keeps_its_keys_across_sessions(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "k"}
    _, first, _ = call_ingest("POST", "/messages", {"payload": 1}, headers=headers, user_arn=ROLE_SESSION_1)
    status, second, _ = call_ingest(
        "POST", "/messages", {"payload": 1}, headers=headers, user_arn=ROLE_SESSION_2
    )
    assert (status, second["message_id"]) == (200, first["message_id"])
    assert outbox.message(first["message_id"])["principal"] == {"S": "111122223333:role/writer"}  # type: ignore[index]


def test_get_returns_the_status_record_without_payload(outbox: Outbox) -> None:
    _, accepted, _ = call_ingest("POST", "/messages", {"payload": {"secret": "s"}, "attributes": {"k": "v"}})
    status, record, _ = call_ingest("GET", f"/messages/{accepted['message_id']}")

    assert status == 200
    assert record["message_id"] == accepted["message_id"]
    assert record["status"] == "PENDING"
    assert record["attempts"] == 0
    assert record["created_at"].endswith("Z")
    assert record["queued_at"] is None
    assert record["last_error"] is None
    assert "payload" not in record


def test_get_with_include_payload(outbox: Outbox) -> None:
    _, accepted, _ = call_ingest("POST", "/messages", {"payload": {"secret": "s"}, "attributes": {"k": "v"}})
    _, record, _ = call_ingest("GET", f"/messages/{accepted['message_id']}", query={"include": "payload"})
    assert (record["payload"], record["attributes"]) == ({"secret": "s"}, {"k": "v"})


def test_get_unknown_or_someone_elses_message_is_404(outbox: Outbox) -> None:
    status, body, _ = call_ingest("GET", "/messages/does-not-exist")
    assert (status, body["error"]["code"]) == (404, "not_found")

    _, accepted, _ = call_ingest("POST", "/messages", {"payload": 1}, user_arn=ALICE)
    assert call_ingest("GET", f"/messages/{accepted['message_id']}", user_arn=ALICE)[0] == 200
    assert call_ingest("GET", f"/messages/{accepted['message_id']}")[0] == 404


def test_transaction_fails_when_the_outbox_table_is_missing(server_outbox: Outbox) -> None:
    dynamodb_client().delete_table(TableName=server_outbox.resources.outbox_table)

    status, body, _ = call_ingest("POST", "/messages", {"payload": 1})

    assert status >= 500
    assert body["error"]["code"] == "store_unavailable"
    assert server_outbox.messages() == []


@pytest.mark.parametrize(
    "fault", [FaultKind.TRANSACTION_CONFLICT, FaultKind.THROTTLE, FaultKind.SERVER_ERROR]
)
def test_a_fault_that_outlasts_retries_is_a_503_and_writes_nothing(
    server_outbox: Outbox, fault: FaultKind
) -> None:
    faults = FaultInjector(dynamodb_client()).add("TransactWriteItems", fault, times=None)

    status, body, _ = call_ingest("POST", "/messages", {"payload": 1})

    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    assert faults.injected[("TransactWriteItems", fault)] >= 3  # retried before giving up
    assert server_outbox.counts() == (0, 0)


@pytest.mark.parametrize(
    "fault", [FaultKind.TRANSACTION_CONFLICT, FaultKind.THROTTLE, FaultKind.SERVER_ERROR]
)
def test_a_passing_fault_is_retried_and_the_message_accepted_once(
    server_outbox: Outbox, fault: FaultKind
) -> None:
    FaultInjector(dynamodb_client()).add("TransactWriteItems", fault, times=2)

    status, _, _ = call_ingest("POST", "/messages", {"payload": 1})

    assert status == 202
    assert server_outbox.counts() == (1, 1)


@pytest.mark.parametrize("key", [None, "order-9"])
def test_a_lost_response_is_resent_and_accepted_once(server_outbox: Outbox, key: str | None) -> None:
    faults = FaultInjector(dynamodb_client()).add("TransactWriteItems", FaultKind.LOST_RESPONSE)
    headers = {"Idempotency-Key": key} if key else {}

    status, body, _ = call_ingest("POST", "/messages", {"payload": 1}, headers=headers)

    assert faults.injected[("TransactWriteItems", FaultKind.LOST_RESPONSE)] == 1
    assert status in {200, 202}
    assert body["status"] == "PENDING"
    assert server_outbox.counts() == (1, 1)
    assert server_outbox.messages()[0]["message_id"] == {"S": body["message_id"]}


def test_client_request_token_is_sent_short_and_stable_across_resends(server_outbox: Outbox) -> None:
    sent: list[dict[str, Any]] = []
    dynamodb_client().meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems", lambda params, **_: sent.append(dict(params))
    )
    FaultInjector(dynamodb_client()).add("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT, times=1)

    call_ingest("POST", "/messages", {"payload": 1})

    tokens = [params["ClientRequestToken"] for params in sent]
    assert len(tokens) == 2  # the conflict was retried by tenacity with the same items ...
    assert tokens[0] != tokens[1]  # ... under a new token: a cancelled one's is not reused (ADR 0003)
    assert 1 <= len(tokens[0]) <= CLIENT_REQUEST_TOKEN_LENGTH
    # A rebuilt request (new timestamps, new entry id) gets a new token.
    call_ingest("POST", "/messages", {"payload": 1})
    assert sent[-1]["ClientRequestToken"] != tokens[0]


def test_payload_never_reaches_the_logs(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    secret = "card-4111-1111-1111-1111"
    caplog.set_level(logging.DEBUG)
    call_ingest("POST", "/messages", {"payload": {"card": secret}, "attributes": {"k": "v"}})
    call_ingest("POST", "/messages", {"payload": {"card": secret}, "group_id": "g"})  # refused
    dynamodb_client().delete_table(TableName=outbox.resources.outbox_table)
    call_ingest("POST", "/messages", {"payload": {"card": secret}})  # fails in the store

    formatter = ingest.logger.registered_formatter
    # botocore's own DEBUG wire log shows request bodies; it is off unless someone turns it on.
    ours = [record for record in caplog.records if not record.name.startswith(("botocore", "urllib3"))]
    lines = [formatter.format(record) for record in ours]
    assert any("message accepted" in line for line in lines)
    assert any("store unavailable" in line for line in lines)
    assert not [line for line in lines if secret in line]

"""Security checks that tests/infra does not already make (IAM least privilege, IAM-only routes, TLS and
encryption of the queues are there): payloads stay out of logs, error bodies and status records."""

from __future__ import annotations

import json
import logging

import pytest

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.testing.faults import FaultInjector, FaultKind
from tests.conftest import FakeClock, Outbox, call_ingest, make_relay, run_relay

SECRET = "card-4111-1111-1111-1111"


@pytest.mark.server
def test_payloads_never_reach_the_logs_during_a_relay_run_with_faults(
    server_outbox: Outbox, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for number in range(12):
        status, _, _ = call_ingest("POST", "/messages", {"payload": {"card": SECRET, "n": number}})
        assert status == 202
    sqs = FaultInjector(sqs_client(), seed=3)
    sqs.add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=1)
    sqs.add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=1)
    sqs.add("SendMessageBatch", FaultKind.LOST_RESPONSE, times=1)
    FaultInjector(dynamodb_client(), seed=3).add("TransactWriteItems", FaultKind.SERVER_ERROR, times=2)
    clock = FakeClock()
    for _ in range(4):
        run_relay(make_relay(server_outbox, clock, batch_size=3), 30)
        clock.advance(600)

    ours = [r for r in caplog.records if not r.name.startswith(("botocore", "urllib3"))]
    lines = [r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in ours]
    printed = capsys.readouterr()
    assert ours or printed.out, "no relay log was captured: the check would prove nothing"
    assert sqs.injected, "no fault was injected"
    assert not [line for line in lines if SECRET in line]
    assert SECRET not in printed.out + printed.err
    failed = [item for item in server_outbox.messages() if item["status"]["S"] == "FAILED"]
    assert failed, "the rejection did not poison a message"
    assert all(SECRET not in json.dumps(item.get("last_error", {})) for item in failed)


def test_error_bodies_never_echo_the_payload(outbox: Outbox) -> None:
    refused = [
        {"payload": {"card": SECRET}, "group_id": "g"},  # group on a standard queue
        {"payload": {"card": SECRET}, "attributes": {"AWS.x": SECRET}},
        {"payload": {"card": SECRET, "pad": "x" * 300_000}},
        {"payload": {"card": SECRET}, "unknown": SECRET},
    ]
    for body in refused:
        status, answer, _ = call_ingest("POST", "/messages", body)
        assert 400 <= status < 500, answer
        assert SECRET not in json.dumps(answer)
    assert outbox.counts() == (0, 0)


def test_status_record_and_replay_hide_the_payload_unless_asked(outbox: Outbox) -> None:
    headers = {"Idempotency-Key": "sec-1"}
    status, accepted, _ = call_ingest("POST", "/messages", {"payload": {"card": SECRET}}, headers=headers)
    assert status == 202
    _, replay, _ = call_ingest("POST", "/messages", {"payload": {"card": SECRET}}, headers=headers)
    _, record, _ = call_ingest("GET", f"/messages/{accepted['message_id']}")
    assert SECRET not in json.dumps(replay) + json.dumps(record)
    other = "arn:aws:iam::999999999999:user/mallory"
    status, _, _ = call_ingest(
        "GET", f"/messages/{accepted['message_id']}", query={"include": "payload"}, user_arn=other
    )
    assert status == 404


def test_an_idempotency_key_reused_by_another_caller_never_returns_the_first_callers_message(
    outbox: Outbox,
) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    alice = "arn:aws:iam::111111111111:user/alice"
    mallory = "arn:aws:iam::999999999999:user/mallory"
    _, first, _ = call_ingest(
        "POST", "/messages", {"payload": {"card": SECRET}}, headers=headers, user_arn=alice
    )
    status, second, _ = call_ingest(
        "POST", "/messages", {"payload": {"x": 1}}, headers=headers, user_arn=mallory
    )
    assert status == 202
    assert second["message_id"] != first["message_id"]

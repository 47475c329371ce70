"""Payloads stored apart (ADR 0023): a message item that would exceed one write unit keeps its payload in
the Payloads table, written once before the ingest transaction and never rewritten. Assertions read the
tables and the queue back."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outbox import Status, enqueue, outbox_write
from outbox.core.clients import dynamodb_client
from outbox.core.settings import Settings
from outbox.data.item_size import item_size
from outbox.data.payloads import INLINE_ITEM_LIMIT_BYTES, PAYLOAD_GRACE_DAYS
from outbox.data.store import MessageStore
from outbox.ingest.service import message_status
from outbox.local.queue import message_id_of
from outbox.testing.faults import FaultInjector, FaultKind
from tests.conftest import Outbox, call_ingest, make_relay, one_shard, receive_all, run_relay

BIG = {"blob": "x" * 100_000}
SMALL = {"n": 1}


def _bodies(outbox: Outbox) -> dict[str, Any]:
    return {
        message_id_of(message): json.loads(message["Body"])
        for message in receive_all(outbox.resources.queue_url)
    }


def _store(outbox: Outbox) -> MessageStore:
    return MessageStore(
        dynamodb_client(), outbox.settings.messages_table, payloads_table=outbox.settings.payloads_table
    )


def test_a_large_payload_is_written_once_apart_and_its_message_item_stays_small(outbox: Outbox) -> None:
    accepted = enqueue(BIG, settings=outbox.settings)
    message = outbox.message(accepted.message_id)
    assert message is not None
    assert "payload" not in message
    ((payload_id, stored),) = outbox.payloads().items()
    assert message["payload_ref"] == {"S": payload_id}
    assert json.loads(stored["payload"]["S"]) == BIG
    assert item_size(message) <= INLINE_ITEM_LIMIT_BYTES

    summary = run_relay(make_relay(outbox))

    assert summary.sent == 1
    assert _bodies(outbox) == {accepted.message_id: BIG}
    queued = outbox.message(accepted.message_id)
    assert queued is not None
    assert queued["status"] == {"S": Status.QUEUED}
    assert item_size(queued) <= INLINE_ITEM_LIMIT_BYTES  # the status change rewrote a small item
    assert outbox.payloads() == {payload_id: stored}  # never rewritten


def test_the_payload_outlives_its_messages_retention_by_the_grace(outbox: Outbox) -> None:
    before = datetime.now(UTC)
    enqueue(BIG, settings=outbox.settings)
    ((stored),) = outbox.payloads().values()
    expires = datetime.fromtimestamp(int(stored["expires_at"]["N"]), UTC)
    horizon = timedelta(days=outbox.settings.retention_days + PAYLOAD_GRACE_DAYS)
    assert before + horizon - timedelta(seconds=1) <= expires <= datetime.now(UTC) + horizon


def test_a_message_item_that_fits_one_write_unit_keeps_its_payload(outbox: Outbox) -> None:
    accepted = enqueue(SMALL, settings=outbox.settings)
    message = outbox.message(accepted.message_id)
    assert message is not None
    assert json.loads(message["payload"]["S"]) == SMALL
    assert "payload_ref" not in message
    assert outbox.payloads() == {}


def test_without_a_payloads_table_every_payload_stays_inline(outbox: Outbox) -> None:
    inline = replace(outbox.settings, payloads_table=None)
    accepted = enqueue(BIG, settings=inline)
    message = outbox.message(accepted.message_id)
    assert message is not None
    assert json.loads(message["payload"]["S"]) == BIG
    assert outbox.payloads() == {}


def test_a_table_holding_inline_and_apart_payloads_relays_and_reads_both(outbox: Outbox) -> None:
    """Migration: messages accepted before the Payloads table existed keep their payload inline."""
    old = enqueue({**BIG, "era": "before"}, settings=replace(outbox.settings, payloads_table=None))
    new = enqueue({**BIG, "era": "after"}, settings=outbox.settings)

    assert run_relay(make_relay(outbox)).sent == 2

    assert _bodies(outbox) == {
        old.message_id: {**BIG, "era": "before"},
        new.message_id: {**BIG, "era": "after"},
    }
    for accepted, era in ((old, "before"), (new, "after")):
        record = message_status(accepted.message_id, store=_store(outbox), include_payload=True)
        assert record["payload"]["era"] == era


def test_get_with_include_payload_reads_a_payload_stored_apart(outbox: Outbox) -> None:
    status, body, _ = call_ingest("POST", "/messages", {"payload": BIG})
    assert status == 202
    status, record, _ = call_ingest("GET", f"/messages/{body['message_id']}", query={"include": "payload"})
    assert status == 200
    assert record["payload"] == BIG


def test_a_replay_answers_from_the_accepted_message_and_a_changed_body_leaves_its_payload_alone(
    outbox: Outbox,
) -> None:
    headers = {"Idempotency-Key": "order-1"}
    status, first, _ = call_ingest("POST", "/messages", {"payload": BIG}, headers=headers)
    assert status == 202
    status, again, _ = call_ingest("POST", "/messages", {"payload": BIG}, headers=headers)
    assert (status, again["message_id"]) == (200, first["message_id"])
    status, _, _ = call_ingest("POST", "/messages", {"payload": {**BIG, "changed": True}}, headers=headers)
    assert status == 409

    record = message_status(first["message_id"], store=_store(outbox), include_payload=True)
    assert record["payload"] == BIG
    message = outbox.message(first["message_id"])
    assert message is not None
    orphans = set(outbox.payloads()) - {message["payload_ref"]["S"]}
    assert len(orphans) == 2  # the replay's and the conflict's: named by nothing, they expire
    assert run_relay(make_relay(outbox)).sent == 1
    assert _bodies(outbox) == {first["message_id"]: BIG}


def test_a_payload_that_is_gone_is_never_sent_empty_the_message_is_parked_saying_why(
    outbox: Outbox,
) -> None:
    accepted = enqueue(BIG, settings=outbox.settings)
    (payload_id,) = outbox.payloads()
    dynamodb_client().delete_item(
        TableName=outbox.settings.payloads_table or "", Key={"payload_id": {"S": payload_id}}
    )

    summary = run_relay(make_relay(outbox))

    assert (summary.sent, summary.poisoned) == (0, 1)
    assert receive_all(outbox.resources.queue_url) == []
    message = outbox.message(accepted.message_id)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert payload_id in message["last_error"]["S"]
    (entry,) = outbox.entries()
    assert entry["state"] == {"S": "PARKED"}  # kept for an operator, not lost
    record = message_status(accepted.message_id, store=_store(outbox), include_payload=True)
    assert record["payload"] is None
    assert "gone" in record["payload_error"]


def test_a_fifo_group_waits_behind_a_message_parked_for_its_missing_payload(fifo_outbox: Outbox) -> None:
    outbox = one_shard(fifo_outbox)
    first = enqueue(BIG, settings=outbox.settings, group_id="g")
    second = enqueue(SMALL, settings=outbox.settings, group_id="g")
    (payload_id,) = outbox.payloads()
    dynamodb_client().delete_item(
        TableName=outbox.settings.payloads_table or "", Key={"payload_id": {"S": payload_id}}
    )

    summary = run_relay(make_relay(outbox))

    assert (summary.sent, summary.poisoned, summary.held_back) == (0, 1, 1)
    assert receive_all(outbox.resources.queue_url) == []
    assert outbox.message(first.message_id)["status"] == {"S": Status.FAILED}  # type: ignore[index]
    assert outbox.message(second.message_id)["status"] == {"S": Status.PENDING}  # type: ignore[index]


def test_a_relay_without_the_payloads_table_setting_parks_nothing_it_cannot_read_silently(
    outbox: Outbox,
) -> None:
    accepted = enqueue(BIG, settings=outbox.settings)
    relay_settings = replace(outbox.settings, payloads_table=None)

    summary = run_relay(make_relay(Outbox(outbox.resources, relay_settings)))

    assert (summary.sent, summary.poisoned) == (0, 1)
    message = outbox.message(accepted.message_id)
    assert message is not None
    assert "PAYLOADS_TABLE is not set" in message["last_error"]["S"]


def test_outbox_write_stores_the_payload_before_the_callers_transaction(outbox: Outbox) -> None:
    write = outbox_write(BIG, settings=outbox.settings)
    ((payload_id, stored),) = outbox.payloads().items()
    assert json.loads(stored["payload"]["S"]) == BIG
    assert write.items[0]["Put"]["Item"]["payload_ref"] == {"S": payload_id}
    assert outbox.messages() == []  # nothing else written until the caller commits

    dynamodb_client().transact_write_items(TransactItems=write.items)
    assert run_relay(make_relay(outbox)).sent == 1
    assert _bodies(outbox) == {write.message_id: BIG}


def test_a_failed_ingest_transaction_leaves_only_an_orphan_payload_and_a_retry_succeeds(
    server_outbox: Outbox,
) -> None:
    """A crash (or a lost cause) between the payload's write and the transaction: the message was not
    accepted, the payload is an orphan nobody names, and the client's retry is accepted whole."""
    outbox = server_outbox
    injector = FaultInjector(dynamodb_client())
    injector.add("TransactWriteItems", FaultKind.SERVER_ERROR, times=None)
    status, _, _ = call_ingest("POST", "/messages", {"payload": BIG}, headers={"Idempotency-Key": "k"})
    assert status == 503
    assert outbox.messages() == []
    assert outbox.entries() == []
    assert len(outbox.payloads()) == 1  # named by nothing: harmless, and it expires

    injector.clear()
    status, body, _ = call_ingest("POST", "/messages", {"payload": BIG}, headers={"Idempotency-Key": "k"})
    assert status == 202
    assert run_relay(make_relay(outbox)).sent == 1
    assert _bodies(outbox) == {body["message_id"]: BIG}


def test_a_lost_response_to_the_payload_write_writes_the_same_payload_again(server_outbox: Outbox) -> None:
    outbox = server_outbox
    FaultInjector(dynamodb_client()).add("PutItem", FaultKind.LOST_RESPONSE, times=1)
    status, body, _ = call_ingest("POST", "/messages", {"payload": BIG})
    assert status == 202
    message = outbox.message(body["message_id"])
    assert message is not None
    assert list(outbox.payloads()) == [message["payload_ref"]["S"]]


def test_a_payload_write_that_fails_writes_nothing_and_says_retry(server_outbox: Outbox) -> None:
    outbox = server_outbox
    FaultInjector(dynamodb_client()).add("PutItem", FaultKind.SERVER_ERROR, times=None)
    status, body, _ = call_ingest("POST", "/messages", {"payload": BIG})
    assert status == 503, body
    assert outbox.messages() == []
    assert outbox.payloads() == {}


def test_settings_read_the_payloads_table_from_the_environment() -> None:
    base = {"MESSAGES_TABLE": "m", "OUTBOX_TABLE": "o", "QUEUE_URL": "https://q/queue"}
    assert Settings.from_env(base).payloads_table is None
    assert Settings.from_env({**base, "PAYLOADS_TABLE": " p "}).payloads_table == "p"


def test_the_payloads_table_has_its_ttl_on(outbox: Outbox) -> None:
    described = dynamodb_client().describe_time_to_live(TableName=outbox.resources.payloads_table or "")
    assert described["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_nothing_but_put_item_ever_writes_a_payload(outbox: Outbox) -> None:
    """The relay, finalize and the consumer side touch the message item only."""
    writes: list[str] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        tables = (
            {params.get("TableName")}
            | set(params.get("RequestItems", {}))
            | {next(iter(action.values())).get("TableName") for action in params.get("TransactItems", [])}
        )
        if outbox.settings.payloads_table in tables:
            writes.append(model.name)

    dynamodb_client().meta.events.register("before-parameter-build.dynamodb", record)
    try:
        enqueue(BIG, settings=outbox.settings)
        run_relay(make_relay(outbox))
    except ClientError:  # pragma: no cover - any error here fails the assertion below
        pass
    assert [name for name in writes if name not in {"BatchGetItem", "GetItem"}] == ["PutItem"]
    assert "BatchGetItem" in writes


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

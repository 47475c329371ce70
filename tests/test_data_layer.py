"""The data-access layer (`outbox.data.transact`, `outbox.data.messages`): cancellations decoded into one
reason per action, typed message records, and the operator commands' retry of a mere conflict."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from outbox.core.clients import dynamodb_client
from outbox.core.domain import Status, epoch_millis, utc_now
from outbox.core.validation import validate_message
from outbox.data import messages
from outbox.data.messages import MessageRecord
from outbox.data.store import MessageExists, MessageStore
from outbox.data.transact import CANCELLED, CONDITION_FAILED, TransactionCancelled, decode_error, transact
from outbox.data.transactions import prepare_message, ready_entry_item, transaction_items
from outbox.ops import admin
from outbox.testing.faults import FaultInjector, FaultKind
from outbox.testing.request_tokens import TokenMemory
from relay import store as relay_store
from relay.entries import Entry
from relay.store import OutboxStore
from tests.conftest import Outbox, ingest_messages, shard_leases

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


def _store(outbox: Outbox) -> OutboxStore:
    return OutboxStore(
        dynamodb_client(),
        messages_table=outbox.settings.messages_table,
        outbox_table=outbox.settings.outbox_table,
    )


def _failed_message(outbox: Outbox) -> str:
    """One message made FAILED (its entry PARKED) the way a relay does it: a poison under the shard's
    lease."""
    (message_id,) = ingest_messages(outbox, 1)
    store = _store(outbox)
    (entry,) = [Entry.from_item(item) for item in outbox.entries()]
    leases = shard_leases(outbox)
    lease = leases.acquire(entry.shard, holder="t", now_ms=epoch_millis(utc_now()))
    assert lease is not None
    check = leases.check_action(lease)
    assert store.poison(entry, check=check, attempts=1, error="refused", now=utc_now(), sent_at_ms=None)
    assert leases.release(lease)
    return message_id


# -- transact: one reason per action -----------------------------------------------------------------------


def test_a_cancellation_is_decoded_into_one_reason_per_action(outbox: Outbox) -> None:
    (message_id,) = ingest_messages(outbox, 1)
    items: list[TransactWriteItemTypeDef] = [
        {
            "ConditionCheck": {
                "TableName": outbox.settings.outbox_table,
                "Key": {"shard": {"S": "0"}, "entry_id": {"S": "no-such-entry"}},
                "ConditionExpression": "attribute_not_exists(entry_id)",
            }
        },
        {
            "Update": {
                "TableName": outbox.settings.messages_table,
                "Key": {"message_id": {"S": message_id}},
                "UpdateExpression": "SET note = :note",
                "ConditionExpression": "#status = :queued",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":note": {"S": "x"}, ":queued": {"S": Status.QUEUED}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
    ]

    with pytest.raises(TransactionCancelled) as caught:
        transact(dynamodb_client(), items)

    cancelled = caught.value
    assert isinstance(cancelled.__cause__, ClientError)
    assert cancelled.codes == ["None", CONDITION_FAILED]
    assert (cancelled.code_at(0), cancelled.code_at(1), cancelled.code_at(7)) == (
        None,
        CONDITION_FAILED,
        None,
    )
    assert cancelled.failed_conditions == {1}
    assert not cancelled.retryable
    assert cancelled.old_item_at(0) is None
    old = cancelled.old_item_at(1)
    assert old is not None
    assert MessageRecord.from_item(old).status == Status.PENDING
    assert "note" not in (outbox.message(message_id) or {})


def test_the_decoder_reads_reasons_from_the_message_when_the_list_is_missing() -> None:
    decoded = decode_error(
        {
            "Error": {
                "Code": CANCELLED,
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[None, TransactionConflict]",
            }
        }
    )

    assert decoded.code == CANCELLED
    assert decoded.reasons is not None
    assert [reason.code for reason in decoded.reasons] == [None, "TransactionConflict"]
    assert [reason.retryable for reason in decoded.reasons] == [False, True]


def test_the_relay_and_the_data_layer_share_their_error_types() -> None:
    assert relay_store.TransactionCancelled is TransactionCancelled
    assert relay_store.ReadsUnprocessed is messages.ReadsUnprocessed
    assert relay_store.UNPROCESSED_ROUNDS == messages.UNPROCESSED_ROUNDS


def test_the_outbox_package_does_not_import_the_relay() -> None:
    probe = (
        "import sys, outbox.ops.admin, outbox.api, outbox.data.cancellation; "
        "print(sorted(m for m in sys.modules if m == 'relay' or m.startswith('relay.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- typed message records ---------------------------------------------------------------------------------


def test_a_stored_message_reads_as_a_record(outbox: Outbox) -> None:
    (message_id,) = ingest_messages(outbox, 1)
    (entry,) = outbox.entries()

    record = MessageStore(dynamodb_client(), outbox.settings.messages_table).get_message(message_id)

    assert record is not None
    assert (record.message_id, record.status, record.payload) == (message_id, Status.PENDING, '{"n":0}')
    assert record.attributes == {"origin": "test"}
    assert (record.principal, record.attempts, record.group_id) == ("anonymous", 0, None)
    assert record.entry_key == {"shard": entry["shard"], "entry_id": entry["entry_id"]}
    assert record.created_at is not None
    assert record.queued_at is None


def test_the_relays_fetch_gives_records_and_counts_its_calls(outbox: Outbox) -> None:
    ids = ingest_messages(outbox, 3)
    store = _store(outbox)

    records = store.fetch_message_records([*ids, ids[0], "0190c6d2-0000-7000-8000-000000000000"])

    assert store.calls == 1
    assert sorted(records) == sorted(ids)
    assert {records[mid].payload for mid in ids} == {'{"n":0}', '{"n":1}', '{"n":2}'}
    assert all(record.status == Status.PENDING for record in records.values())


def test_a_taken_message_id_comes_back_as_the_stored_record(outbox: Outbox) -> None:
    request = validate_message(
        {"n": 1}, idempotency_key="k", fifo=False, max_payload_bytes=outbox.settings.max_payload_bytes
    )
    message = prepare_message(request, shards=outbox.settings.outbox_shards)
    settings = outbox.settings
    store = MessageStore(dynamodb_client(), settings.messages_table)
    items = transaction_items(
        message, messages_table=settings.messages_table, outbox_table=settings.outbox_table
    )
    store.write_new(items)
    again = prepare_message(request, shards=settings.outbox_shards)

    with pytest.raises(MessageExists) as caught:
        store.write_new(
            transaction_items(
                again, messages_table=settings.messages_table, outbox_table=settings.outbox_table
            )
        )

    existing = caught.value.existing
    assert existing is not None
    assert (existing.message_id, existing.request_hash) == (message.message_id, message.request_hash)
    assert outbox.counts() == (1, 1)


# -- the operator commands ---------------------------------------------------------------------------------


def test_a_requeue_after_a_skip_writes_the_entry_ingest_would(outbox: Outbox) -> None:
    message_id = _failed_message(outbox)
    settings, client = outbox.settings, dynamodb_client()
    admin.skip(message_id, dynamodb=client, settings=settings, actor="ops")
    # Now, not a fixed date: entry ids come from one process-wide time-ordered source that never goes
    # backwards, so a requeue in the future would leave every later test's ids in that future.
    moment = datetime.now(UTC).replace(microsecond=0)

    admin.requeue(message_id, dynamodb=client, settings=settings, actor="ops", now=moment)

    record = MessageStore(client, settings.messages_table).get_message(message_id)
    assert record is not None
    assert record.shard is not None
    assert record.entry_id is not None
    expected = ready_entry_item(
        shard=record.shard,
        entry_id=record.entry_id,
        message_id=message_id,
        group_id=None,
        due_ms=epoch_millis(moment),
    )
    assert outbox.entries() == [expected]


@pytest.mark.server
def test_an_operator_transaction_that_only_conflicted_is_sent_again_under_a_new_token(
    server_outbox: Outbox, sent_tokens: list[str]
) -> None:
    message_id = _failed_message(server_outbox)
    sent_tokens.clear()
    faults = FaultInjector(dynamodb_client()).add("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT)
    memory = TokenMemory(dynamodb_client())

    result = admin.requeue(
        message_id, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="ops"
    )

    faults.remove()
    memory.remove()
    assert result.reused_entry
    assert faults.injected[("TransactWriteItems", FaultKind.TRANSACTION_CONFLICT)] == 1
    assert server_outbox.message(message_id)["status"] == {"S": Status.PENDING}  # type: ignore[index]
    assert len(sent_tokens) == 2
    assert sent_tokens[0] != sent_tokens[1]
    assert memory.replayed["cancelled"] == 0


@pytest.mark.server
def test_an_operator_transaction_that_keeps_conflicting_reports_the_change(
    server_outbox: Outbox, sent_tokens: list[str]
) -> None:
    message_id = _failed_message(server_outbox)
    sent_tokens.clear()
    faults = FaultInjector(dynamodb_client()).add(
        "TransactWriteItems", FaultKind.TRANSACTION_CONFLICT, times=None
    )

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        admin.skip(message_id, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="ops")

    faults.remove()
    assert len(sent_tokens) == admin.CONFLICT_RETRY.attempts
    assert len(set(sent_tokens)) == admin.CONFLICT_RETRY.attempts
    message = server_outbox.message(message_id)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert "skipped_at" not in message


def test_an_operator_transaction_whose_condition_failed_is_not_sent_again(outbox: Outbox) -> None:
    message_id = _failed_message(outbox)
    client = dynamodb_client()
    sent: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.TransactWriteItems", lambda **_: sent.append("TransactWriteItems")
    )
    [entry] = outbox.entries()
    client.delete_item(
        TableName=outbox.settings.outbox_table, Key={"shard": entry["shard"], "entry_id": entry["entry_id"]}
    )

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        admin.skip(message_id, dynamodb=client, settings=outbox.settings, actor="ops")

    assert sent == ["TransactWriteItems"]

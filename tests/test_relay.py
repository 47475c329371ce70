"""The relay against moto in-process: what it stores and what arrives in SQS."""

from __future__ import annotations

import json
import math
import time
from collections import Counter

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import Status
from outbox.local.queue import message_id_of
from outbox.testing.calls import CallCounter
from outbox.testing.faults import Crash, CrashAfter
from tests.conftest import (
    FakeClock,
    Outbox,
    ingest_messages,
    make_relay,
    one_shard,
    receive_all,
    run_relay,
)

FINALIZED_FIELDS = {"status", "queued_at", "sqs_message_id", "updated_at", "expires_at"}
"""What finalize writes; `expires_at` (the TTL) starts only now, when nothing is owed any more."""


def test_a_run_queues_every_message_and_empties_the_outbox(outbox: Outbox) -> None:
    ids = ingest_messages(outbox, 30)
    before = {mid: outbox.message(mid) for mid in ids}

    summary = run_relay(make_relay(outbox))

    assert (summary.sent, summary.rolled_back, summary.poisoned, summary.drained) == (30, 0, 0, True)
    assert outbox.entries() == []
    received = receive_all(outbox.resources.queue_url)
    assert sorted(message_id_of(m) for m in received) == sorted(ids)
    for sqs_message in received:
        message_id = message_id_of(sqs_message)
        item = outbox.message(message_id)
        assert item is not None
        assert item["status"] == {"S": Status.QUEUED}
        assert item["sqs_message_id"] == {"S": sqs_message["MessageId"]}
        assert item["queued_at"]["S"].endswith("Z")
        assert sqs_message["Body"] == before[message_id]["payload"]["S"]  # type: ignore[index]
        assert sqs_message["MessageAttributes"]["origin"]["StringValue"] == "test"
        # Metadata preservation: nothing but the four finalize fields changed.
        old = before[message_id]
        assert old is not None
        assert {k: v for k, v in item.items() if k not in FINALIZED_FIELDS} == {
            k: v for k, v in old.items() if k not in FINALIZED_FIELDS
        }


def test_an_empty_outbox_is_a_quiet_drained_run(outbox: Outbox) -> None:
    summary = run_relay(make_relay(outbox))
    assert (summary.sent, summary.drained, summary.oldest_pending_age_seconds) == (0, True, 0.0)


def test_a_message_no_longer_pending_is_never_flipped_or_sent(outbox: Outbox) -> None:
    moved, pending = ingest_messages(outbox, 2)
    dynamodb_client().update_item(
        TableName=outbox.resources.messages_table,
        Key={"message_id": {"S": moved}},
        UpdateExpression="SET #s = :p",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":p": {"S": Status.PROCESSING}},
    )

    summary = run_relay(make_relay(outbox))

    assert (summary.sent, summary.stale) == (1, 1)
    assert outbox.message(moved)["status"] == {"S": Status.PROCESSING}  # type: ignore[index]
    assert outbox.message(pending)["status"] == {"S": Status.QUEUED}  # type: ignore[index]
    assert [message_id_of(m) for m in receive_all(outbox.resources.queue_url)] == [pending]
    assert outbox.entries() == []


def test_oldest_pending_age_is_reported(outbox: Outbox) -> None:
    ingest_messages(outbox, 3)
    clock = FakeClock()
    clock.advance(90)
    summary = run_relay(make_relay(outbox, clock))
    assert summary.oldest_pending_age_seconds >= 89


class SendTimedClock(FakeClock):
    """Monotonic time that moves only when a send batch completes: deadlines without real timing."""

    def __init__(self, seconds_per_send: float) -> None:
        super().__init__()
        self.ticks = 0.0
        self.seconds_per_send = seconds_per_send

    def monotonic(self) -> float:
        return self.ticks

    def on_send(self, **_: object) -> None:
        self.ticks += self.seconds_per_send


def test_deadline_stops_between_batches_and_leaves_no_half_state(outbox: Outbox) -> None:
    outbox = one_shard(outbox)  # one shard: its batches of 5 follow one another
    ids = ingest_messages(outbox, 40)
    clock = SendTimedClock(seconds_per_send=10)
    sqs_client().meta.events.register("after-call.sqs.SendMessageBatch", clock.on_send)
    relay = make_relay(outbox, clock, batch_size=5, parallel_shards=1, batch_margin_seconds=0.0)

    summary = relay.run(25)  # batches start at t=0, 10 and 20 (one send each), then the deadline stops it

    assert not summary.drained
    assert summary.sent == 15
    entries = outbox.entries()
    assert all("released" in lease for lease in outbox.leases().values())  # every lease given up
    with_entry = {entry["message_id"]["S"] for entry in entries}
    for message_id in ids:
        status = outbox.message(message_id)["status"]["S"]  # type: ignore[index]
        assert (status == Status.PENDING) == (message_id in with_entry)
    sqs_client().meta.events.unregister("after-call.sqs.SendMessageBatch", clock.on_send)
    assert run_relay(make_relay(outbox)).sent == 40 - summary.sent


def test_a_relay_started_past_its_deadline_does_nothing(outbox: Outbox) -> None:
    ingest_messages(outbox, 3)
    summary = make_relay(outbox).run(time.monotonic() - 1)
    assert (summary.sent, summary.drained) == (0, False)
    assert len(outbox.entries()) == 3


def _crash_run(outbox: Outbox, operation: str, when: str | None) -> None:
    CrashAfter(sqs_client() if operation == "SendMessageBatch" else dynamodb_client(), operation, when=when)
    try:
        run_relay(make_relay(outbox, parallel_shards=1))
    except Crash:
        return
    raise AssertionError("the run did not crash")


def _after_crash_the_next_run_completes(outbox: Outbox, ids: list[str]) -> list[str]:
    clock = FakeClock()
    clock.advance(outbox.settings.lease_seconds + 1)  # the dead run's leases have expired
    summary = run_relay(make_relay(outbox, clock))
    assert summary.drained
    assert outbox.entries() == []
    assert all(outbox.message(mid)["status"] == {"S": Status.QUEUED} for mid in ids)  # type: ignore[index]
    received = [message_id_of(m) for m in receive_all(outbox.resources.queue_url)]
    assert set(received) == set(ids)
    return received


def test_crash_after_the_lease_renew_loses_nothing_and_sends_once(outbox: Outbox) -> None:
    """The relay dies holding the lease, its watermark written, before its first send: the next holder
    takes the lease when it expires and sends everything once."""
    ids = ingest_messages(outbox, 12)
    _crash_run(outbox, "UpdateItem", when="sending_upto = :upto")
    received = _after_crash_the_next_run_completes(outbox, ids)
    assert sorted(received) == sorted(ids)


def test_crash_after_send_resends_only_what_was_sent(outbox: Outbox) -> None:
    ids = ingest_messages(outbox, 12)
    _crash_run(outbox, "SendMessageBatch", when=None)
    received = _after_crash_the_next_run_completes(outbox, ids)
    duplicates = len(received) - len(set(received))
    assert 1 <= duplicates <= 10  # the one batch sent before the crash, resent with the same message_id


def test_crash_after_finalize_sends_once(outbox: Outbox) -> None:
    ids = ingest_messages(outbox, 12)
    _crash_run(outbox, "TransactWriteItems", when='"Delete"')
    received = _after_crash_the_next_run_completes(outbox, ids)
    assert sorted(received) == sorted(ids)


def test_summary_is_json_ready(outbox: Outbox) -> None:
    ingest_messages(outbox, 2)
    summary = run_relay(make_relay(outbox)).as_dict()
    assert json.loads(json.dumps(summary))["sent"] == 2
    assert {"sent", "rolled_back", "poisoned", "retries", "duplicates_possible", "drained"} <= set(summary)


def test_each_shard_is_worked_under_its_own_lease_in_batches_of_its_own(outbox: Outbox) -> None:
    """40 messages over 8 shards with batches of 10 (ADR 0018): a shard's batches are its own (no carry
    across shards); per batch one renew and one finalize transaction (its lease's check first); per shard
    an acquire, a release, one page and the read after the release. No entry write but the finalize."""
    ids = ingest_messages(outbox, 40)
    per_shard = Counter(entry["shard"]["S"] for entry in outbox.entries())
    busy = len(per_shard)
    batches = sum(math.ceil(count / 10) for count in per_shard.values())
    shards = outbox.settings.outbox_shards
    counter = CallCounter(dynamodb_client(), sqs_client())

    summary = run_relay(make_relay(outbox, batch_size=10))

    assert (summary.sent, summary.shards_busy, summary.drained) == (40, 0, True)
    assert outbox.entries() == []
    assert sorted(message_id_of(m) for m in receive_all(outbox.resources.queue_url)) == sorted(ids)
    assert counter.calls["TransactWriteItems"] == batches  # one finalize per batch, nothing else
    assert counter.calls["UpdateItem"] == 2 * shards + batches  # acquire + release, and a renew per batch
    assert counter.calls["BatchGetItem"] == batches
    assert summary.batches == batches >= busy
    assert counter.calls["Query"] == 2 * shards  # one page, and the read after the release
    assert all("released" in lease for lease in outbox.leases().values())


def test_fifo_resends_past_the_four_minute_window_are_sent_and_counted(fifo_outbox: Outbox) -> None:
    """docs/design.md §4.5: an entry first claimed more than 4 minutes ago is still sent, never parked for
    it, and counted, because SQS's 5-minute deduplication may no longer drop the copy."""
    late, recent = ingest_messages(fifo_outbox, 2, group=lambda n: f"group-{n}")
    now_ms = int(time.time() * 1000)
    for message_id, age_seconds in ((late, 300), (recent, 60)):
        entry = next(e for e in fifo_outbox.entries() if e["message_id"]["S"] == message_id)
        dynamodb_client().update_item(
            TableName=fifo_outbox.resources.outbox_table,
            Key={"shard": entry["shard"], "entry_id": entry["entry_id"]},
            UpdateExpression="SET first_send_at = :then",
            ExpressionAttributeValues={":then": {"N": str(now_ms - age_seconds * 1000)}},
        )

    summary = run_relay(make_relay(fifo_outbox))

    assert (summary.sent, summary.duplicates_possible, summary.resent_after_window) == (2, 2, 1)
    received = receive_all(fifo_outbox.resources.queue_url)
    assert sorted(message_id_of(m) for m in received) == sorted([late, recent])

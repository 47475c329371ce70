"""Relay bounds a chaos run cannot see (issue #12, items 3-5 and 7): no send after the lease, an attempt
count that only grows, resend marks only for what may be in the queue, a bounded wait for DynamoDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import EntryState
from outbox.core.settings import FIFO_RESEND_WINDOW_SECONDS
from outbox.local.queue import message_id_of
from outbox.ops import admin
from outbox.testing.faults import FaultInjector, FaultKind
from relay.entries import RunSummary
from relay.store import UNPROCESSED_ROUNDS
from tests.conftest import FakeClock, Outbox, ingest_messages, make_relay, one_shard, receive_all, run_relay


class SteppingClock:
    """Wall-clock and monotonic time that move together, by hand: a lease can run out mid-batch."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def _entries_by_message(outbox: Outbox) -> dict[str, dict[str, Any]]:
    return {entry["message_id"]["S"]: entry for entry in outbox.entries()}


def test_no_send_starts_once_the_lease_has_run_out_and_the_unsent_are_given_back(outbox: Outbox) -> None:
    outbox = one_shard(outbox)  # one lease, one batch of 20
    ids = ingest_messages(outbox, 20)
    clock = SteppingClock()
    sends = 0

    def lease_runs_out_after_the_first_send(**_: Any) -> None:
        nonlocal sends
        sends += 1
        if sends == 1:
            clock.advance(outbox.settings.lease_seconds)  # a stall: the lease is over

    sqs_client().meta.events.register("after-call.sqs.SendMessageBatch", lease_runs_out_after_the_first_send)
    relay = make_relay(outbox, clock, batch_size=20)  # type: ignore[arg-type]

    summary = relay.run(clock.monotonic() + 3600)

    assert sends == 1  # the second packed batch of ten never started
    first = {message_id_of(m) for m in receive_all(outbox.resources.queue_url)}
    assert len(first) == 10
    assert (summary.sent, summary.held_back, summary.drained) == (10, 10, False)
    left = _entries_by_message(outbox)
    assert set(left) == set(ids) - first
    for entry in left.values():  # left as they were: no attempt, no resend mark
        assert entry["state"] == {"S": EntryState.READY}
        assert entry["attempts"] == {"N": "0"}
        assert "first_send_at" not in entry

    again = relay.run(clock.monotonic() + 3600)

    assert (again.sent, again.duplicates_possible) == (10, 0)
    assert {message_id_of(m) for m in receive_all(outbox.resources.queue_url)} == set(left)


@pytest.mark.server
def test_a_relay_that_read_an_entry_cannot_be_overtaken_by_another_relay_counting_it(
    server_outbox: Outbox,
) -> None:
    """Under per-entry claims a relay B could count a failure between relay A's read and A's claim, and
    A's count had to be an `ADD` on the stored one. Under the shard's lease (ADR 0018) B cannot start: its
    acquire is refused while A holds the shard, and A counts once per attempt."""
    outbox = one_shard(server_outbox)
    (message_id,) = ingest_messages(outbox, 1)
    FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None)
    clock = FakeClock()
    run_relay(make_relay(outbox, clock))
    assert _entries_by_message(outbox)[message_id]["attempts"] == {"N": "1"}
    clock.advance(outbox.settings.max_backoff_seconds + 1)
    other: list[RunSummary] = []

    def other_relay_in_between(parsed: dict[str, Any], **_: Any) -> None:
        if other or not any(item["message_id"]["S"] == message_id for item in parsed.get("Items", [])):
            return
        other.append(run_relay(make_relay(outbox, clock)))

    dynamodb_client().meta.events.register("after-call.dynamodb.Query", other_relay_in_between)
    run_relay(make_relay(outbox, clock))  # relay A, with relay B started after A's read

    assert [(summary.shards_busy, summary.rolled_back) for summary in other] == [(1, 0)]
    assert _entries_by_message(outbox)[message_id]["attempts"] == {"N": "2"}


@pytest.mark.server
def test_a_fifo_message_never_sent_is_not_counted_as_a_late_resend(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    head, behind = ingest_messages(fifo, 2, group=lambda n: "g")
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None)
    clock = FakeClock()
    first = run_relay(make_relay(fifo, clock))
    assert (first.rolled_back, first.held_back) == (1, 1)
    entries = _entries_by_message(fifo)
    assert "first_send_at" not in entries[head]  # refused (SenderFault=false): not in the queue
    assert "first_send_at" not in entries[behind]  # held back: never sent
    faults.clear()
    clock.advance(FIFO_RESEND_WINDOW_SECONDS + fifo.settings.max_backoff_seconds + 1)

    later = run_relay(make_relay(fifo, clock))

    assert (later.sent, later.resent_after_window, later.duplicates_possible) == (2, 0, 0)
    assert [message_id_of(m) for m in receive_all(fifo.resources.queue_url)] == [head, behind]


@pytest.mark.server
def test_a_message_whose_send_may_have_reached_sqs_keeps_its_resend_mark(server_outbox: Outbox) -> None:
    (message_id,) = ingest_messages(server_outbox, 1)
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.LOST_RESPONSE, times=None)
    clock = FakeClock()
    run_relay(make_relay(server_outbox, clock))
    assert "first_send_at" in _entries_by_message(server_outbox)[message_id]
    faults.clear()
    clock.advance(server_outbox.settings.max_backoff_seconds + 1)

    later = run_relay(make_relay(server_outbox, clock))

    assert (later.sent, later.duplicates_possible) == (1, 1)


def test_keys_dynamodb_keeps_leaving_unprocessed_stop_the_batch_after_a_bounded_wait(
    outbox: Outbox,
) -> None:
    outbox = one_shard(outbox)  # one batch of 3
    ids = ingest_messages(outbox, 3)
    calls = 0

    def leave_everything_unprocessed(parsed: dict[str, Any], **_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 50:  # the loop before the fix asked for ever; end it so that the test fails, not hangs
            raise RuntimeError("BatchGetItem asked for ever")
        for table, items in parsed.get("Responses", {}).items():
            keys = [{"message_id": item["message_id"]} for item in items]
            parsed.setdefault("UnprocessedKeys", {})[table] = {"Keys": keys, "ConsistentRead": True}
        parsed["Responses"] = {}

    dynamodb_client().meta.events.register("after-call.dynamodb.BatchGetItem", leave_everything_unprocessed)
    clock = FakeClock()

    summary = run_relay(make_relay(outbox, clock))

    assert calls == UNPROCESSED_ROUNDS
    assert (summary.sent, summary.drained) == (0, False)
    assert any("unprocessed" in error for error in summary.errors)
    assert receive_all(outbox.resources.queue_url) == []
    dynamodb_client().meta.events.unregister("after-call.dynamodb.BatchGetItem", leave_everything_unprocessed)
    assert all("released" in lease for lease in outbox.leases().values())  # nothing was sent: released
    assert run_relay(make_relay(outbox, clock)).sent == 3
    assert sorted(message_id_of(m) for m in receive_all(outbox.resources.queue_url)) == sorted(ids)


@pytest.mark.server
def test_a_requeued_message_counts_as_a_resend_only_if_an_earlier_send_may_have_queued_it(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    (maybe_sent,) = ingest_messages(fifo, 1, group=lambda n: "g1")
    clock = FakeClock()
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.LOST_RESPONSE, times=None)
    run_relay(make_relay(fifo, clock))  # maybe_sent reached the queue; the relay cannot know
    faults.clear()
    (never_sent,) = ingest_messages(fifo, 1, group=lambda n: "g2")
    faults.add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None)
    clock.advance(fifo.settings.max_backoff_seconds + 1)
    run_relay(make_relay(fifo, clock))  # both refused for good: FAILED, entries parked
    faults.clear()
    entries = _entries_by_message(fifo)
    assert "first_send_at" not in entries[never_sent]  # refused, never in the queue: no resend mark
    assert "first_send_at" in entries[maybe_sent]
    for message_id in (never_sent, maybe_sent):
        admin.requeue(message_id, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")
    clock.advance(FIFO_RESEND_WINDOW_SECONDS + 1)

    later = run_relay(make_relay(fifo, clock))

    assert later.sent == 2
    assert (later.duplicates_possible, later.resent_after_window) == (1, 1)  # maybe_sent only

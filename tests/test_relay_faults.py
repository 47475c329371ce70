"""The relay under injected faults, on the moto server over HTTP with the strict contract on."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.ledger import DedupLedger
from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import EntryState, Status, epoch_millis
from outbox.local.queue import message_id_of
from outbox.ops import admin
from outbox.testing.faults import FaultInjector, FaultKind
from relay.entries import Entry, RunSummary
from tests.conftest import (
    FakeClock,
    Outbox,
    ingest_messages,
    make_relay,
    receive_all,
    run_relay,
)

pytestmark = pytest.mark.server


def _entry_of(outbox: Outbox, message_id: str) -> dict[str, object] | None:
    return next((e for e in outbox.entries() if e["message_id"]["S"] == message_id), None)


def test_failed_send_rolls_back_the_claim_and_leaves_the_message_exactly_as_it_was(
    server_outbox: Outbox,
) -> None:
    (message_id,) = ingest_messages(server_outbox, 1)
    before = server_outbox.message(message_id)
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None)
    clock = FakeClock()

    summary = run_relay(make_relay(server_outbox, clock))

    assert (summary.sent, summary.rolled_back) == (0, 1)
    assert summary.retries >= 1  # tenacity re-sent the failed entry before giving up
    assert summary.errors == [f"send of {message_id} rolled back: InternalError: injected entry failure"]
    assert server_outbox.message(message_id) == before  # whole item unchanged
    entry = _entry_of(server_outbox, message_id)
    assert entry is not None
    assert "claim_token" not in entry
    assert "lease_until" not in entry
    assert entry["attempts"] == {"N": "1"}
    assert "InternalError" in entry["last_error"]["S"]  # type: ignore[index]
    assert int(entry["next_attempt_at"]["N"]) > epoch_millis(clock.now())  # type: ignore[index]  # backing off
    assert "first_send_at" not in entry  # refused with SenderFault=false: never in the queue, not a resend
    assert receive_all(server_outbox.resources.queue_url) == []

    faults.clear()
    assert run_relay(make_relay(server_outbox, clock)).sent == 0  # backing off: not yet
    clock.advance(server_outbox.settings.max_backoff_seconds + 1)
    assert run_relay(make_relay(server_outbox, clock)).sent == 1
    assert server_outbox.message(message_id)["status"] == {"S": Status.QUEUED}  # type: ignore[index]
    assert [message_id_of(m) for m in receive_all(server_outbox.resources.queue_url)] == [message_id]


def test_an_entry_that_always_fails_is_poisoned_after_max_attempts_and_requeue_delivers_it(
    server_outbox: Outbox,
) -> None:
    (message_id,) = ingest_messages(server_outbox, 1)
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None)
    clock = FakeClock()
    runs: list[RunSummary] = []
    for _ in range(server_outbox.settings.max_attempts):
        runs.append(run_relay(make_relay(server_outbox, clock)))
        clock.advance(server_outbox.settings.max_backoff_seconds + 1)

    assert sum(run.rolled_back for run in runs) == server_outbox.settings.max_attempts - 1
    assert sum(run.poisoned for run in runs) == 1
    message = server_outbox.message(message_id)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert "InternalError" in message["last_error"]["S"]
    assert "failed_at" in message
    entry = _entry_of(server_outbox, message_id)
    assert entry is not None
    assert entry["state"] == {"S": EntryState.PARKED}

    assert list(admin.failed_message_ids(dynamodb_client(), server_outbox.settings)) == [message_id]
    result = admin.requeue(
        message_id, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="test"
    )
    assert result.reused_entry
    requeued = server_outbox.message(message_id)
    assert requeued is not None
    assert requeued["status"] == {"S": Status.PENDING}
    assert requeued["requeued_by"] == {"S": "test"}
    assert "failed_at" not in requeued

    faults.clear()
    assert run_relay(make_relay(server_outbox, clock)).sent == 1
    assert server_outbox.message(message_id)["status"] == {"S": Status.QUEUED}  # type: ignore[index]
    assert [message_id_of(m) for m in receive_all(server_outbox.resources.queue_url)] == [message_id]


def test_a_definite_rejection_poisons_at_once(server_outbox: Outbox) -> None:
    rejected, fine = ingest_messages(server_outbox, 2)
    FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_REJECTED, when=rejected, times=None)

    summary = run_relay(make_relay(server_outbox, batch_size=1))  # the fault rejects a whole batch

    assert (summary.poisoned, summary.sent) == (1, 1)
    assert server_outbox.message(rejected)["status"] == {"S": Status.FAILED}  # type: ignore[index]
    assert server_outbox.message(fine)["status"] == {"S": Status.QUEUED}  # type: ignore[index]


def test_whole_call_failures_are_unknown_outcomes_and_not_counted(server_outbox: Outbox) -> None:
    (message_id,) = ingest_messages(server_outbox, 1)
    FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.SERVER_ERROR, times=None)

    summary = run_relay(make_relay(server_outbox))

    assert summary.rolled_back == 1
    entry = _entry_of(server_outbox, message_id)
    assert entry is not None
    assert entry["attempts"] == {"N": "0"}


def test_finalize_that_keeps_failing_is_reported_and_delivered_later_with_the_same_id(
    server_outbox: Outbox,
) -> None:
    """The victim's finalize stays undecided: its shard stops there and keeps its lease unreleased (the
    watermark must count the resend, ADR 0018); the other shards are delivered. Once the lease ran out the
    next holder sends the rest, and the victim again with the same message_id, counted."""
    ids = ingest_messages(server_outbox, 12)
    victim = ids[0]
    shard_of = {entry["message_id"]["S"]: entry["shard"]["S"] for entry in server_outbox.entries()}
    others = [mid for mid in ids if shard_of[mid] != shard_of[victim]]
    faults = FaultInjector(dynamodb_client()).add(
        "TransactWriteItems", FaultKind.TRANSACTION_CONFLICT, when=victim, times=None
    )
    clock = FakeClock()

    summary = run_relay(make_relay(server_outbox, clock, batch_size=1))  # the victim's batch alone

    assert summary.finalize_failed == 1
    assert any("finalize failed" in error for error in summary.errors)
    assert all(server_outbox.message(mid)["status"] == {"S": Status.QUEUED} for mid in others)  # type: ignore[index]
    assert server_outbox.message(victim)["status"] == {"S": Status.PENDING}  # type: ignore[index]
    lease = server_outbox.leases()[shard_of[victim]]
    assert "released" not in lease
    assert lease["sending_upto"] == {"S": Entry.from_item(_entry_of(server_outbox, victim)).entry_id}

    faults.clear()
    clock.advance(server_outbox.settings.lease_seconds + 1)
    later = run_relay(make_relay(server_outbox, clock))
    assert later.duplicates_possible >= 1
    assert server_outbox.message(victim)["status"] == {"S": Status.QUEUED}  # type: ignore[index]
    received = Counter(message_id_of(m) for m in receive_all(server_outbox.resources.queue_url))
    assert set(received) == set(ids)
    assert received[victim] == 2  # the documented duplicate: same message_id, consumers dedupe on it
    assert server_outbox.entries() == []


@pytest.mark.parametrize("operation", ["TransactWriteItems", "SendMessageBatch", "BatchGetItem", "Query"])
def test_lost_responses_lose_nothing_and_strand_nothing(server_outbox: Outbox, operation: str) -> None:
    ids = ingest_messages(server_outbox, 20)
    client = sqs_client() if operation == "SendMessageBatch" else dynamodb_client()
    faults = FaultInjector(client, seed=7).add(operation, FaultKind.LOST_RESPONSE, times=None, rate=0.5)

    clock = FakeClock()
    for _ in range(5):
        run_relay(make_relay(server_outbox, clock))
        clock.advance(server_outbox.settings.max_backoff_seconds + 1)
    faults.clear()
    run_relay(make_relay(server_outbox, clock))

    assert faults.injected[(operation, FaultKind.LOST_RESPONSE)] >= 1
    assert server_outbox.entries() == []
    assert all(server_outbox.message(mid)["status"] == {"S": Status.QUEUED} for mid in ids)  # type: ignore[index]
    received = {message_id_of(m) for m in receive_all(server_outbox.resources.queue_url)}
    assert received == set(ids)


def test_fifo_groups_arrive_in_order_through_a_failure_without_duplicates(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    groups = ["alpha", "beta", "gamma"]
    ids = ingest_messages(fifo, 150, group=lambda n: groups[n % 3])
    victim = ids[3 * 20]  # alpha's 21st message
    faults = FaultInjector(sqs_client()).add(
        "SendMessageBatch", FaultKind.ENTRY_FAILURE, when=victim, times=None
    )
    clock = FakeClock()

    first = run_relay(make_relay(fifo, clock, parallel_shards=4))
    assert first.rolled_back == 1
    assert first.held_back >= 1  # alpha's later entries waited behind the failed one
    faults.clear()
    clock.advance(fifo.settings.max_backoff_seconds + 1)
    run_relay(make_relay(fifo, clock, parallel_shards=4))

    received = receive_all(fifo.resources.queue_url)
    by_group: dict[str, list[int]] = defaultdict(list)
    for sqs_message in received:
        by_group[sqs_message["Attributes"]["MessageGroupId"]].append(
            int(sqs_message["Body"].split(":")[1][:-1])
        )
    assert len(received) == 150
    for index, group in enumerate(groups):
        assert by_group[group] == list(range(index, 150, 3))
    assert fifo.entries() == []


def test_a_fifo_batch_stopped_by_an_aws_error_holds_its_groups_back(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    """A claim batch whose payload read fails for good stops its shard with its entries still claimed. The
    same group's later entries, already read into the carry, must not go out in the next shard's batches
    (they did: one order violation in a CI chaos run)."""
    fifo = new_server_outbox(fifo=True)
    ids = ingest_messages(fifo, 6, group=lambda _: "alpha")
    faults = FaultInjector(dynamodb_client()).add(
        "BatchGetItem", FaultKind.SERVER_ERROR, when=ids[0], times=None
    )
    clock = FakeClock()

    first = run_relay(make_relay(fifo, clock, batch_size=2))

    assert faults.injected[("BatchGetItem", FaultKind.SERVER_ERROR)] >= 1
    assert first.relay_errors >= 1
    assert receive_all(fifo.resources.queue_url) == []  # alpha's head is stuck: nothing of alpha goes out
    faults.clear()
    clock.advance(fifo.settings.lease_seconds + 1)
    run_relay(make_relay(fifo, clock, batch_size=2))

    assert [message_id_of(m) for m in receive_all(fifo.resources.queue_url)] == ids
    assert fifo.entries() == []


def test_two_relays_at_once_deliver_every_message_once(server_outbox: Outbox) -> None:
    count = 1000
    ids = ingest_messages(server_outbox, count)
    resends = _count_transport_resends(sqs_client(), "SendMessageBatch")
    summaries: list[RunSummary] = []
    relays = [make_relay(server_outbox, parallel_shards=2) for _ in range(2)]
    threads = [
        threading.Thread(target=lambda r=relay: summaries.append(run_relay(r, 240))) for relay in relays
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(summary.sent for summary in summaries) == count
    assert server_outbox.entries() == []
    received = Counter(message_id_of(m) for m in receive_all(server_outbox.resources.queue_url))
    assert set(received) == set(ids)
    duplicates = sum(received.values()) - count
    # Claims keep two relays off each other's messages. A duplicate can only come from a send whose
    # response was lost (moto answering slower than the read timeout on a busy machine): botocore resent it.
    assert duplicates <= resends[0] + sum(summary.duplicates_possible for summary in summaries)


def _count_transport_resends(client: Any, operation: str) -> list[int]:
    """How many requests of `operation` botocore resent after an error (whose first try may have landed)."""
    counter = [0]

    def needs_retry(caught_exception: Exception | None = None, **_: Any) -> None:
        if caught_exception is not None:
            counter[0] += 1

    client.meta.events.register(
        f"needs-retry.{client.meta.service_model.service_id.hyphenize()}.{operation}", needs_retry
    )
    return counter


def test_dedup_ledger_windows_start_at_the_first_accepted_send(tmp_path: Path) -> None:
    ledger = DedupLedger(tmp_path / "dedup.sqlite")
    ledger.record(["a"], now=1000.0)
    ledger.record(["a"], now=1100.0)  # a repeat inside the window does not extend it (SQS drops it)
    assert ledger.any_within_window(["b", "a"], now=1299.0)
    assert not ledger.any_within_window(["a"], now=1301.0)
    ledger.record(["a"], now=1301.0)  # after the window a send is accepted again: a new window
    assert ledger.any_within_window(["a"], now=1500.0)
    assert not ledger.any_within_window([], now=1500.0)


@pytest.mark.parametrize("with_ledger", [True, False])
def test_fifo_entry_faults_spare_resends_sqs_would_accept(
    new_server_outbox: Callable[..., Outbox], tmp_path: Path, with_ledger: bool
) -> None:
    """A send applied with its response lost, then a rejection of the resend: SQS would accept that resend
    (same deduplication id, inside 5 minutes), so with the ledger the fault is spared and the message is
    delivered once; without it, the made-up rejection poisons a message that is already in the queue."""
    outbox = new_server_outbox(fifo=True)
    (message_id,) = ingest_messages(outbox, 1, group=lambda n: "g")
    ledger = DedupLedger(tmp_path / "dedup.sqlite") if with_ledger else None
    faults = FaultInjector(sqs_client(), dedup_ledger=ledger)
    faults.add("SendMessageBatch", FaultKind.LOST_RESPONSE, times=1)
    faults.add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None)
    clock = FakeClock()

    for _ in range(3):
        run_relay(make_relay(outbox, clock))
        clock.advance(outbox.settings.max_backoff_seconds + 1)

    received = [message_id_of(m) for m in receive_all(outbox.resources.queue_url)]
    assert received == [message_id]  # in the queue once, either way
    status = outbox.message(message_id)["status"]  # type: ignore[index]
    if with_ledger:
        assert ledger is not None
        assert ledger.spared() >= 1
        assert status == {"S": Status.QUEUED}
        assert faults.injected[("SendMessageBatch", FaultKind.ENTRY_REJECTED)] == 0
    else:
        assert status == {"S": Status.FAILED}  # what a later requeue would send a second time


def _entry_of(outbox: Outbox, message_id: str) -> dict[str, Any]:
    (entry,) = [item for item in outbox.entries() if item["message_id"]["S"] == message_id]
    return entry

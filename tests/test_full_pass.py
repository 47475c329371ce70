"""A full pass (`Relay.run(wait_for_busy=True)`, what `outbox relay --once` asks for, ADR 0018): a shard
another relay holds is waited for up to one lease instead of skipped. Assertions read the queue and the
tables back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from outbox.core.domain import epoch_millis
from outbox.local.queue import message_id_of
from relay.core import BUSY_SHARD_POLL_SECONDS
from relay.handler import relay_rung
from relay.leases import ShardLease
from tests.conftest import Outbox, ingest_messages, make_relay, one_shard, receive_all, shard_leases


class SleepingClock:
    """Wall-clock and monotonic time that only a relay's `sleep` moves forward (a loaded machine's own
    slowness does not run a lease out), with a hook per sleep."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps = 0
        self.on_sleep = lambda: None
        self._wall = datetime.now(UTC)
        self._monotonic = time.monotonic()

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self._monotonic + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.offset += seconds
        self.on_sleep()


def _held_by_another_relay(outbox: Outbox, clock: SleepingClock) -> ShardLease:
    lease = shard_leases(outbox).acquire("0", holder="the-other-relay", now_ms=epoch_millis(clock.now()))
    assert lease is not None
    return lease


def _received(outbox: Outbox) -> list[str]:
    return sorted(message_id_of(message) for message in receive_all(outbox.resources.queue_url))


def _relay(outbox: Outbox, clock: SleepingClock):  # type: ignore[no-untyped-def]
    relay = make_relay(outbox, clock)  # type: ignore[arg-type]
    relay._sleep = clock.sleep
    return relay


def test_a_sweep_skips_a_busy_shard_and_a_full_pass_waits_for_its_release(outbox: Outbox) -> None:
    outbox = one_shard(outbox)
    ids = ingest_messages(outbox, 5)
    clock = SleepingClock()
    lease = _held_by_another_relay(outbox, clock)

    skipped = _relay(outbox, clock).run(clock.monotonic() + 300)
    assert (skipped.sent, skipped.shards_busy, _received(outbox)) == (0, 1, [])

    clock.on_sleep = lambda: shard_leases(outbox).release(lease) and None  # the holder finishes
    full = _relay(outbox, clock).run(clock.monotonic() + 300, wait_for_busy=True)

    assert (full.sent, full.shards_busy, full.drained, clock.sleeps) == (5, 0, True, 1)
    assert _received(outbox) == sorted(ids)
    assert outbox.entries() == []


def test_a_full_pass_takes_over_a_dead_holders_shard_once_its_lease_runs_out(outbox: Outbox) -> None:
    outbox = one_shard(outbox)
    ids = ingest_messages(outbox, 3)
    clock = SleepingClock()
    _held_by_another_relay(outbox, clock)  # and never released: the holder died

    full = _relay(outbox, clock).run(clock.monotonic() + 300, wait_for_busy=True)

    assert (full.sent, full.shards_busy, full.drained) == (3, 0, True)
    assert _received(outbox) == sorted(ids)
    assert clock.offset >= outbox.settings.lease_seconds  # waited for the lease to run out, no longer
    assert clock.offset <= outbox.settings.lease_seconds + 2 * BUSY_SHARD_POLL_SECONDS


def test_a_full_pass_waits_one_lease_at_most_and_says_the_shard_was_not_drained(outbox: Outbox) -> None:
    outbox = one_shard(outbox)
    ingest_messages(outbox, 2)
    clock = SleepingClock()
    lease = _held_by_another_relay(outbox, clock)

    def the_holder_keeps_renewing() -> None:
        nonlocal lease
        lease = shard_leases(outbox).renew(lease, now_ms=epoch_millis(clock.now()))

    clock.on_sleep = the_holder_keeps_renewing
    full = _relay(outbox, clock).run(clock.monotonic() + 600, wait_for_busy=True)

    assert (full.sent, full.shards_busy, full.drained) == (0, 1, False)
    assert _received(outbox) == []
    assert len(outbox.entries()) == 2
    assert outbox.settings.lease_seconds <= clock.offset <= outbox.settings.lease_seconds + 1


def test_a_full_pass_waits_no_longer_than_the_runs_deadline(outbox: Outbox) -> None:
    outbox = one_shard(outbox)
    ingest_messages(outbox, 1)
    clock = SleepingClock()
    _held_by_another_relay(outbox, clock)

    full = _relay(outbox, clock).run(clock.monotonic() + 10, wait_for_busy=True)

    assert (full.sent, full.shards_busy, full.drained) == (0, 1, False)
    assert clock.offset <= 10


def test_a_doorbell_run_never_waits_for_a_busy_shard(outbox: Outbox) -> None:
    outbox = one_shard(outbox)
    ingest_messages(outbox, 1)
    clock = SleepingClock()
    _held_by_another_relay(outbox, clock)

    rung = relay_rung(_relay(outbox, clock), clock.monotonic() + 60, frozenset({"0"}), wait_for_busy=False)

    assert (rung.sent, rung.shards_busy, clock.sleeps) == (0, 1, 0)

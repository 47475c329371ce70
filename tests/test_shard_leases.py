"""Fenced shard leases (relay/leases.py, ADR 0018): each guard has a scenario here that fails without it
(`chaos/mutants.py` removes each in turn). Assertions read the lease item and the other items back from
the table, never only what the module returned."""

from __future__ import annotations

from typing import Any

import pytest

from outbox.core.clients import dynamodb_client
from outbox.data.transact import TransactionCancelled, transact
from relay.leases import LeaseLost, ShardLease, ShardLeases, Watermark, is_lease_partition, lease_key
from tests.conftest import Outbox

LEASE_SECONDS = 60
NOW = 1_800_000_000_000
"""Epoch ms; the tests move time by hand."""


@pytest.fixture(params=["outbox", "server_outbox"])
def any_outbox(request: pytest.FixtureRequest) -> Outbox:
    """moto in-process, and the moto server behind the strict-contract hook (which refuses, as AWS does,
    an expression value that no expression uses)."""
    found: Outbox = request.getfixturevalue(request.param)
    return found


def _leases(outbox: Outbox) -> ShardLeases:
    return ShardLeases(
        dynamodb_client(), outbox_table=outbox.resources.outbox_table, lease_seconds=LEASE_SECONDS
    )


def _stored(outbox: Outbox, shard: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb_client().get_item(
        TableName=outbox.resources.outbox_table, Key=lease_key(shard), ConsistentRead=True
    )["Item"]
    return item


def _marker_written_under(outbox: Outbox, leases: ShardLeases, lease: ShardLease, name: str) -> bool:
    """A finalize's shape: the lease's check plus one write; True when the write committed."""
    table = outbox.resources.outbox_table
    marker = {"shard": {"S": "marker"}, "entry_id": {"S": name}, "message_id": {"S": name}}
    codes: list[str] = []
    try:
        transact(
            dynamodb_client(), [leases.check_action(lease), {"Put": {"TableName": table, "Item": marker}}]
        )
    except TransactionCancelled as cancelled:
        codes = cancelled.codes
    assert codes in ([], ["ConditionalCheckFailed", "None"])  # refused on the lease's check, nothing else
    written = dynamodb_client().get_item(
        TableName=table, Key={"shard": {"S": "marker"}, "entry_id": {"S": name}}, ConsistentRead=True
    )
    return "Item" in written


def test_a_free_shard_is_acquired_with_fence_one_in_a_partition_of_its_own(any_outbox: Outbox) -> None:
    lease = _leases(any_outbox).acquire("3", holder="a", now_ms=NOW)
    assert lease == ShardLease("3", "a", 1, NOW + LEASE_SECONDS * 1000)
    stored = _stored(any_outbox, "3")
    assert stored["shard"]["S"] == "lease#3"
    assert is_lease_partition(stored["shard"]["S"])
    assert (stored["holder"]["S"], stored["fence"]["N"]) == ("a", "1")
    assert not any(item["shard"]["S"] == "3" for item in any_outbox.entries())


def test_a_held_lease_is_refused_to_another_relay(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    assert leases.acquire("3", holder="a", now_ms=NOW) is not None
    assert leases.acquire("3", holder="b", now_ms=NOW + 59_000) is None
    stored = _stored(any_outbox, "3")
    assert (stored["holder"]["S"], stored["fence"]["N"]) == ("a", "1")


def test_an_expired_lease_is_taken_over_with_the_watermark_its_holder_left(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    old = leases.acquire("3", holder="a", now_ms=NOW)
    assert old is not None
    leases.renew(old, now_ms=NOW + 1_000, sending_upto="entry-0042")
    taken = leases.acquire("3", holder="b", now_ms=NOW + 1_000 + LEASE_SECONDS * 1000 + 1)
    assert taken is not None
    assert taken.fence == 2
    assert taken.taken_over == Watermark("entry-0042", NOW + 1_000)
    assert _stored(any_outbox, "3")["holder"]["S"] == "b"


def test_a_resent_takeover_still_reports_the_watermark_it_took_over(any_outbox: Outbox) -> None:
    """The takeover's response was lost and the acquire is sent again with the same holder: the old
    holder's watermark is still on the item (an acquire does not clear it, and this acquisition has not
    renewed yet), so the resends it may cause are still counted."""
    leases = _leases(any_outbox)
    old = leases.acquire("3", holder="a", now_ms=NOW)
    assert old is not None
    leases.renew(old, now_ms=NOW, sending_upto="entry-0042")
    later = NOW + LEASE_SECONDS * 1000 + 1
    assert leases.acquire("3", holder="b", now_ms=later) is not None
    again = leases.acquire("3", holder="b", now_ms=later + 100)
    assert again is not None
    assert (again.fence, again.taken_over) == (3, Watermark("entry-0042", NOW))


def test_a_released_lease_is_taken_at_once_and_leaves_no_watermark(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    old = leases.acquire("3", holder="a", now_ms=NOW)
    assert old is not None
    leases.renew(old, now_ms=NOW, sending_upto="entry-0042")
    assert leases.release(old)
    assert "sending_upto" not in _stored(any_outbox, "3")
    taken = leases.acquire("3", holder="b", now_ms=NOW + 1)
    assert taken is not None
    assert (taken.fence, taken.taken_over) == (2, None)


def test_a_resent_acquire_is_still_ours(any_outbox: Outbox) -> None:
    """A lost response: the acquire was applied, the relay sends it again with the same holder token."""
    leases = _leases(any_outbox)
    assert leases.acquire("3", holder="a", now_ms=NOW) is not None
    again = leases.acquire("3", holder="a", now_ms=NOW + 100)
    assert again is not None
    assert (again.fence, again.taken_over) == (2, None)
    assert _stored(any_outbox, "3")["fence"]["N"] == "2"


def test_a_taken_over_holder_can_neither_renew_nor_finalize(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    stale = leases.acquire("3", holder="a", now_ms=NOW)
    assert stale is not None
    current = leases.acquire("3", holder="b", now_ms=NOW + LEASE_SECONDS * 1000 + 1)
    assert current is not None
    with pytest.raises(LeaseLost):
        leases.renew(stale, now_ms=NOW + LEASE_SECONDS * 1000 + 2, sending_upto="entry-0001")
    assert "sending_upto" not in _stored(any_outbox, "3")
    assert not _marker_written_under(any_outbox, leases, stale, "stale")
    assert _marker_written_under(any_outbox, leases, current, "current")


def test_a_holder_resent_its_own_old_fence_cannot_finalize(any_outbox: Outbox) -> None:
    """Same holder token, older fence (an acquisition resent after a lost response raised it): only the
    fence tells the two apart."""
    leases = _leases(any_outbox)
    first = leases.acquire("3", holder="a", now_ms=NOW)
    assert first is not None
    assert leases.acquire("3", holder="a", now_ms=NOW + 1) is not None
    assert not _marker_written_under(any_outbox, leases, first, "old-fence")
    with pytest.raises(LeaseLost):
        leases.renew(first, now_ms=NOW + 2)


def test_a_released_lease_cannot_finalize_or_renew(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    lease = leases.acquire("3", holder="a", now_ms=NOW)
    assert lease is not None
    assert leases.release(lease)
    assert not _marker_written_under(any_outbox, leases, lease, "after-release")
    with pytest.raises(LeaseLost):
        leases.renew(lease, now_ms=NOW + 1)


def test_a_release_by_a_taken_over_holder_changes_nothing(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    stale = leases.acquire("3", holder="a", now_ms=NOW)
    assert stale is not None
    assert leases.acquire("3", holder="b", now_ms=NOW + LEASE_SECONDS * 1000 + 1) is not None
    assert not leases.release(stale)
    stored = _stored(any_outbox, "3")
    assert "released" not in stored
    assert leases.acquire("3", holder="c", now_ms=NOW + LEASE_SECONDS * 1000 + 2) is None


def test_renewing_moves_the_deadline_and_clears_the_watermark_when_asked(any_outbox: Outbox) -> None:
    leases = _leases(any_outbox)
    lease = leases.acquire("3", holder="a", now_ms=NOW)
    assert lease is not None
    lease = leases.renew(lease, now_ms=NOW + 30_000, sending_upto="entry-0007")
    assert lease.lease_until_ms == NOW + 30_000 + LEASE_SECONDS * 1000
    assert _stored(any_outbox, "3")["sending_upto"]["S"] == "entry-0007"
    leases.renew(lease, now_ms=NOW + 31_000)
    stored = _stored(any_outbox, "3")
    assert "sending_upto" not in stored
    assert stored["lease_until"]["N"] == str(NOW + 31_000 + LEASE_SECONDS * 1000)
    # Held until then: another relay one millisecond before the end is still refused.
    assert leases.acquire("3", holder="b", now_ms=NOW + 31_000 + LEASE_SECONDS * 1000 - 1) is None

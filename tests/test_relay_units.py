"""Relay parts without AWS: retry decisions, backoff, batch packing, entry reading."""

from __future__ import annotations

import pytest
from tenacity import stop_after_attempt

from relay.entries import Entry
from relay.retry import RetryPolicy, backoff_seconds
from relay.sender import MAX_BATCH_BYTES, Outgoing, _pack


class Boom(Exception):
    pass


def test_retry_policy_retries_only_what_it_is_told() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom
        return "ok"

    policy = RetryPolicy(attempts=5, initial_wait_seconds=0, max_wait_seconds=0)
    assert policy.retrying(budget_seconds=10, retry_on=(Boom,))(flaky) == "ok"
    assert calls == 3

    with pytest.raises(ValueError, match="x"):
        policy.retrying(budget_seconds=10, retry_on=(Boom,))(lambda: (_ for _ in ()).throw(ValueError("x")))


def test_retry_policy_stops_after_its_attempts() -> None:
    retrying = RetryPolicy(attempts=3, initial_wait_seconds=0, max_wait_seconds=0).retrying(
        budget_seconds=10, retry_on=(Boom,)
    )
    calls = []
    with pytest.raises(Boom):
        retrying(lambda: calls.append(1) or (_ for _ in ()).throw(Boom()))
    assert len(calls) == 3


def test_retry_policy_stops_before_the_budget() -> None:
    """With no time left, the first failure is final: no sleep may outlive the lease or deadline."""
    retrying = RetryPolicy(attempts=10, initial_wait_seconds=1, max_wait_seconds=1).retrying(
        budget_seconds=0.0, retry_on=(Boom,)
    )
    calls = []
    with pytest.raises(Boom):
        retrying(lambda: calls.append(1) or (_ for _ in ()).throw(Boom()))
    assert len(calls) == 1
    assert isinstance(stop_after_attempt(1), stop_after_attempt)


@pytest.mark.parametrize(("attempts", "expected_max"), [(1, 2.0), (2, 4.0), (3, 8.0), (10, 120.0)])
def test_backoff_is_exponential_capped_and_jittered(attempts: int, expected_max: float) -> None:
    assert backoff_seconds(attempts, cap_seconds=120, jitter=1.0) == expected_max
    assert backoff_seconds(attempts, cap_seconds=120, jitter=0.0) == expected_max / 2


def _outgoing(number: int, size: int, group: str | None = None) -> Outgoing:
    entry = Entry("0", f"e{number:04d}", f"m{number}", group, "READY", 0, 0, None)
    return Outgoing(entry, "x" * size, {}, group)


def test_packing_respects_ten_entries_and_one_mebibyte_in_order() -> None:
    small = [_outgoing(n, 100) for n in range(25)]
    assert [len(batch) for batch in _pack(small)] == [10, 10, 5]
    big = [_outgoing(n, 300_000) for n in range(7)]
    batches = _pack(big)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert all(sum(item.size() for item in batch) <= MAX_BATCH_BYTES for batch in batches)
    assert [item.entry.entry_id for batch in batches for item in batch] == [
        item.entry.entry_id for item in big
    ]


def test_entry_claimability() -> None:
    ready = Entry("0", "e", "m", None, "READY", 0, 1000, None)
    assert ready.claimable(1000)
    assert not ready.claimable(999)  # backing off
    parked = Entry("0", "e", "m", None, "PARKED", 8, 0, None)
    assert not parked.claimable(10**12)


def test_claim_fields_of_items_written_before_shard_leases_are_ignored() -> None:
    """ADR 0018: the shard's lease fences relays; an old item's live-looking claim holds nothing back."""
    item = {
        "shard": {"S": "0"},
        "entry_id": {"S": "e"},
        "message_id": {"S": "m"},
        "state": {"S": "READY"},
        "next_attempt_at": {"N": "0"},
        "claim_token": {"S": "an old relay's"},
        "lease_until": {"N": str(10**13)},
    }
    assert Entry.from_item(item).claimable(1000)

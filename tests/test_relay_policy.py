"""The relay's decisions (relay/policy.py) on their own: plain values in, a decision out, no AWS.

The scenario tests (tests/test_relay*.py, tests/test_guards.py) show the same rules through moto; these
pin each rule's edges, where a scenario would need many steps to reach one.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from outbox.core.domain import EntryState
from relay.entries import Entry
from relay.policy import FifoGate, Settle, hold, judge_resend, retry_at_ms, settle_unsent
from relay.sender import Outcome, Outgoing, SendResult

NOW_MS = 1_800_000_000_000
CLAIMED_AT_MS = NOW_MS - 1_000


def entry(entry_id: str, group: str | None = "g", **changes: object) -> Entry:
    base = Entry(
        shard="0",
        entry_id=entry_id,
        message_id=f"m-{entry_id}",
        group_id=group,
        state=EntryState.READY,
        attempts=0,
        next_attempt_at=0,
        lease_until=None,
        claim_token=None,
        first_send_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def result(item: Entry, outcome: Outcome, *, maybe_sent: bool = False) -> SendResult:
    return SendResult(Outgoing(item, "{}", {}, item.group_id), outcome, error="boom", maybe_sent=maybe_sent)


# -- the FIFO gate ----------------------------------------------------------------------------------------


def test_an_entry_in_backoff_blocks_the_rest_of_its_group_and_no_other() -> None:
    page = [
        entry("1", next_attempt_at=NOW_MS + 5_000),
        entry("2"),
        entry("3", group="h"),
    ]
    admission = FifoGate(fifo=True).admit(page, now_ms=NOW_MS, blocked=set())
    assert [e.entry_id for e in admission.entries] == ["3"]
    assert admission.blocks == {"g"}


def test_a_standard_queue_admits_every_claimable_entry_and_blocks_nothing() -> None:
    page = [entry("1", next_attempt_at=NOW_MS + 5_000), entry("2"), entry("3", state=EntryState.PARKED)]
    admission = FifoGate(fifo=False).admit(page, now_ms=NOW_MS, blocked=set())
    assert [e.entry_id for e in admission.entries] == ["2"]
    assert admission.blocks == frozenset()


def test_a_group_blocked_earlier_in_the_run_stays_blocked() -> None:
    admission = FifoGate(fifo=True).admit([entry("1"), entry("2", group="h")], now_ms=NOW_MS, blocked={"g"})
    assert [e.entry_id for e in admission.entries] == ["2"]
    assert admission.blocks == frozenset()  # only the groups this page closes


def test_a_refused_claim_gives_back_the_later_claimed_entries_of_its_group() -> None:
    batch = [entry("1"), entry("2"), entry("3", group="h")]
    sort = FifoGate(fifo=True).sort_claimed(batch, claimed={"2", "3"}, refused={"1"}, blocked=set())
    assert [e.entry_id for e in sort.to_send] == ["3"]
    assert [e.entry_id for e in sort.to_release] == ["2"]
    assert sort.blocks == {"g"}


def test_on_a_standard_queue_a_refused_claim_holds_nothing_back() -> None:
    batch = [entry("1"), entry("2")]
    sort = FifoGate(fifo=False).sort_claimed(batch, claimed={"2"}, refused={"1"}, blocked=set())
    assert [e.entry_id for e in sort.to_send] == ["2"]
    assert sort.to_release == ()


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_no_admitted_entry_overtakes_an_unclaimable_one_of_its_group(
    spec: list[tuple[str, bool]],
) -> None:
    page = [
        entry(f"{index:03}", group=group, next_attempt_at=0 if due else NOW_MS + 1)
        for index, (group, due) in enumerate(spec)
    ]
    admission = FifoGate(fifo=True).admit(page, now_ms=NOW_MS, blocked=set())
    for admitted in admission.entries:
        earlier = [e for e in page if e.group_id == admitted.group_id and e.entry_id < admitted.entry_id]
        assert all(e.claimable(NOW_MS) for e in earlier)


# -- an entry that was not sent ---------------------------------------------------------------------------


def test_an_entry_held_back_counts_no_attempt_and_loses_only_its_own_stamp() -> None:
    fresh = hold(entry("1"), claimed_at_ms=CLAIMED_AT_MS)
    assert (fresh.action, fresh.attempts, fresh.counted) == (Settle.HOLD, 0, False)
    assert fresh.unstamp_claimed_at_ms == CLAIMED_AT_MS
    resent = hold(entry("1", first_send_at=CLAIMED_AT_MS - 60_000), claimed_at_ms=CLAIMED_AT_MS)
    assert resent.unstamp_claimed_at_ms is None  # an earlier claim's stamp is kept


def test_a_rejection_poisons_at_once() -> None:
    settlement = settle_unsent(
        result(entry("1"), Outcome.REJECTED), claimed_at_ms=CLAIMED_AT_MS, max_attempts=5
    )
    assert (settlement.action, settlement.attempts, settlement.counted) == (Settle.POISON, 1, True)


def test_a_failure_rolls_back_until_the_attempts_run_out() -> None:
    first = settle_unsent(result(entry("1"), Outcome.FAILED), claimed_at_ms=CLAIMED_AT_MS, max_attempts=3)
    assert (first.action, first.attempts) == (Settle.RELEASE, 1)
    last = settle_unsent(
        result(entry("1", attempts=2), Outcome.FAILED), claimed_at_ms=CLAIMED_AT_MS, max_attempts=3
    )
    assert (last.action, last.attempts) == (Settle.POISON, 3)


def test_an_unknown_outcome_counts_no_attempt_and_keeps_the_stamp() -> None:
    settlement = settle_unsent(
        result(entry("1", attempts=2), Outcome.UNKNOWN, maybe_sent=True),
        claimed_at_ms=CLAIMED_AT_MS,
        max_attempts=3,
    )
    assert (settlement.action, settlement.attempts, settlement.counted) == (Settle.RELEASE, 2, False)
    assert settlement.unstamp_claimed_at_ms is None  # SQS may hold it: a later send is a resend


def test_backoff_grows_and_stays_under_its_cap() -> None:
    delays = [
        retry_at_ms(NOW_MS, attempts, cap_seconds=60, jitter=0.999) - NOW_MS for attempts in range(1, 9)
    ]
    assert delays == sorted(delays)
    assert delays[0] >= 1_000
    assert max(delays) <= 60_000


# -- resends ----------------------------------------------------------------------------------------------


def test_a_first_send_is_no_resend() -> None:
    assert not judge_resend(None, now_ms=NOW_MS, fifo=True).duplicate_possible


def test_a_fifo_resend_is_late_only_past_the_deduplication_window() -> None:
    inside = judge_resend(NOW_MS - 60_000, now_ms=NOW_MS, fifo=True, window_seconds=240)
    assert inside.duplicate_possible
    assert not inside.after_window
    late = judge_resend(NOW_MS - 241_000, now_ms=NOW_MS, fifo=True, window_seconds=240)
    assert late.after_window
    assert late.late_by_ms == 1_000


def test_a_standard_resend_is_a_possible_duplicate_without_a_window() -> None:
    resend = judge_resend(NOW_MS - 600_000, now_ms=NOW_MS, fifo=False)
    assert resend.duplicate_possible
    assert not resend.after_window

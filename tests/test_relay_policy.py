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
from relay.leases import Watermark
from relay.policy import FifoGate, Settle, first_send_time, hold, judge_resend, retry_at_ms, settle_unsent
from relay.sender import Outcome, Outgoing, SendResult

NOW_MS = 1_800_000_000_000


def entry(entry_id: str, group: str | None = "g", **changes: object) -> Entry:
    base = Entry(
        shard="0",
        entry_id=entry_id,
        message_id=f"m-{entry_id}",
        group_id=group,
        state=EntryState.READY,
        attempts=0,
        next_attempt_at=0,
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


def test_an_entry_held_back_counts_no_attempt_and_writes_nothing() -> None:
    held = hold(entry("1", attempts=2))
    assert (held.action, held.attempts, held.counted, held.maybe_sent) == (Settle.HOLD, 2, False, False)


def test_a_rejection_poisons_at_once() -> None:
    settlement = settle_unsent(result(entry("1"), Outcome.REJECTED), max_attempts=5)
    assert (settlement.action, settlement.attempts, settlement.counted) == (Settle.POISON, 1, True)
    assert not settlement.maybe_sent  # refused: never in the queue, no resend stamp


def test_a_failure_rolls_back_until_the_attempts_run_out() -> None:
    first = settle_unsent(result(entry("1"), Outcome.FAILED), max_attempts=3)
    assert (first.action, first.attempts) == (Settle.RELEASE, 1)
    last = settle_unsent(result(entry("1", attempts=2), Outcome.FAILED), max_attempts=3)
    assert (last.action, last.attempts) == (Settle.POISON, 3)


def test_an_unknown_outcome_counts_no_attempt_and_stamps_the_entry() -> None:
    settlement = settle_unsent(
        result(entry("1", attempts=2), Outcome.UNKNOWN, maybe_sent=True), max_attempts=3
    )
    assert (settlement.action, settlement.attempts, settlement.counted) == (Settle.RELEASE, 2, False)
    assert settlement.maybe_sent  # SQS may hold it: a later send is a resend


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


def test_a_taken_over_watermark_dates_every_entry_up_to_it() -> None:
    """ADR 0018: entries up to the old holder's `sending_upto` may have been sent since `sending_since`;
    the earlier of that and the entry's own stamp applies, and entries past the watermark are not dated."""
    watermark = Watermark(sending_upto="5", sending_since_ms=NOW_MS - 10_000)
    assert first_send_time(entry("3"), watermark) == NOW_MS - 10_000
    assert first_send_time(entry("5"), watermark) == NOW_MS - 10_000
    assert first_send_time(entry("6"), watermark) is None
    assert first_send_time(entry("3", first_send_at=NOW_MS - 60_000), watermark) == NOW_MS - 60_000
    assert first_send_time(entry("6", first_send_at=NOW_MS - 60_000), watermark) == NOW_MS - 60_000
    assert first_send_time(entry("3"), None) is None

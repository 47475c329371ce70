"""The relay's decisions, kept apart from the calls that carry them out (docs/design.md §4).

Plain functions of values the orchestrator (`relay.core.Relay`) has read: no AWS client, no clock, no
randomness (the current time and the jitter come in as numbers). Each rule can so be tested on its own,
and `Relay` is left to read, write and count. Three rules live here:

- the FIFO gate: which entries may be sent now, and which groups must wait for the next run;
- what happens to an entry that was not sent: left, rolled back with backoff, or poisoned;
- what a send that an earlier relay may already have made means for duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

from outbox.core.settings import FIFO_RESEND_WINDOW_SECONDS
from relay.entries import Entry
from relay.leases import Watermark
from relay.retry import backoff_seconds
from relay.sender import Outcome, SendResult

# -- the FIFO gate ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """The entries of a page that may be sent now, in page order, and the groups they close."""

    entries: tuple[Entry, ...]
    blocks: frozenset[str]


@dataclass(frozen=True, slots=True)
class FifoGate:
    """Keeps every FIFO group in order across a run: once one entry of a group is not sent (not due yet,
    parked, its send not accepted), the group is *blocked* and its later entries wait for
    the next run, so that none can overtake it. A standard queue has no order to keep: nothing blocks.

    A blocked group stays blocked for the rest of the run; `blocked` is the set of them so far."""

    fifo: bool

    def holds_back(self, entry: Entry, blocked: AbstractSet[str]) -> bool:
        """Whether an entry waits behind an earlier entry of its group that was not sent."""
        return self.fifo and entry.group_id in blocked

    def blocked_groups(self, entries: Iterable[Entry]) -> frozenset[str]:
        """The groups that entries not sent (or not known to be) close for the rest of the run."""
        if not self.fifo:
            return frozenset()
        return frozenset(entry.group_id for entry in entries if entry.group_id is not None)

    def admit(self, page: Sequence[Entry], *, now_ms: int, blocked: AbstractSet[str]) -> Admission:
        """The entries of a page, oldest first, due at `now_ms` (`Entry.claimable`). One that is not (in
        backoff, parked) blocks its group: its group's later entries must not go out before it."""
        closed = set(blocked)
        admitted: list[Entry] = []
        for entry in page:
            if self.holds_back(entry, closed):
                continue
            if entry.claimable(now_ms):
                admitted.append(entry)
            else:
                closed |= self.blocked_groups([entry])
        return Admission(tuple(admitted), frozenset(closed - blocked))


# -- an entry that was not sent ---------------------------------------------------------------------------


class Settle(StrEnum):
    HOLD = "hold"
    """Left as it was, nothing written: no attempt counted, no backoff (held back for order, or out of
    lease time)."""
    RELEASE = "release"
    """Rolled back to be tried again after a backoff."""
    POISON = "poison"
    """Given up on: the message FAILED, its entry parked for an operator."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to write for an entry that was not sent."""

    action: Settle
    attempts: int
    """The entry's counted attempts, this one included when it counts."""
    counted: bool
    """Whether this send counts as an attempt: SQS answered it and did not queue it."""
    error: str
    maybe_sent: bool
    """The send may have reached SQS (a call failed as a whole): the entry's `first_send_at` is stamped,
    so that its next send counts as a possible resend (ADR 0009)."""


def hold(entry: Entry) -> Settlement:
    """An entry that was not sent (held back for FIFO order, or out of lease time): it was never offered
    to SQS, so nothing counts and nothing is written; the entry stays READY for the next pass."""
    return Settlement(Settle.HOLD, attempts=entry.attempts, counted=False, error="", maybe_sent=False)


def settle_unsent(result: SendResult, *, max_attempts: int) -> Settlement:
    """The fate of an entry whose send was not accepted (docs/design.md §4.3).

    Held back: left as it was. Refused by SQS for good (`REJECTED`): poisoned at once, retrying cannot
    help. Otherwise rolled back, unless the attempts have run out: only an answer from SQS that it did not
    queue the message counts (`FAILED`, `REJECTED`); an `UNKNOWN` (the call failed as a whole) does not,
    since SQS may well have queued it, and it stamps the entry as maybe sent."""
    entry = result.outgoing.entry
    if result.outcome is Outcome.HELD_BACK:
        return hold(entry)
    counted = result.outcome in {Outcome.FAILED, Outcome.REJECTED}
    attempts = entry.attempts + (1 if counted else 0)
    poisoned = result.outcome is Outcome.REJECTED or attempts >= max_attempts
    return Settlement(
        Settle.POISON if poisoned else Settle.RELEASE,
        attempts=attempts,
        counted=counted,
        error=result.error or result.outcome.value,
        maybe_sent=result.maybe_sent,
    )


def retry_at_ms(now_ms: int, attempts: int, *, cap_seconds: int, jitter: float) -> int:
    """When a rolled-back entry may be claimed again: `now_ms` plus the backoff for its counted attempts
    (`relay.retry.backoff_seconds`), `jitter` in [0, 1). Apart from `settle_unsent` so that a relay draws
    a jitter only for the entries it rolls back, as it always has (a seeded relay replays its run)."""
    return now_ms + int(backoff_seconds(attempts, cap_seconds=cap_seconds, jitter=jitter) * 1000)


# -- resends ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resend:
    """What sending (or maybe sending) an entry means for duplicates."""

    duplicate_possible: bool
    """An earlier claim may already have put the message in the queue."""
    late_by_ms: int = 0
    """FIFO only: how far past the deduplication window the resend went (0: within it, or not FIFO)."""

    @property
    def after_window(self) -> bool:
        """SQS no longer drops the copy as a duplicate: the consumer may get the message twice."""
        return self.late_by_ms > 0


def first_send_time(entry: Entry, taken_over: Watermark | None) -> int | None:
    """When the entry may first have been sent (epoch ms), or None: never. Its own `first_send_at`
    (stamped by a rollback of a send that may have reached SQS), or, when this lease was taken over from
    a holder that stopped mid-batch, the watermark's `sending_since_ms` for every entry up to its
    `sending_upto` (an upper bound: entries under it in backoff were not sent by it either). The earlier
    of the two applies."""
    times = [entry.first_send_at] if entry.first_send_at is not None else []
    if taken_over is not None and entry.entry_id <= taken_over.sending_upto:
        times.append(taken_over.sending_since_ms)
    return min(times, default=None)


def judge_resend(
    first_send_at: int | None, *, now_ms: int, fifo: bool, window_seconds: int = FIFO_RESEND_WINDOW_SECONDS
) -> Resend:
    """A send of an entry that may already have been sent at `first_send_at` (`first_send_time`) is a
    resend. docs/design.md §4.5: a FIFO resend past the 4-minute window is still sent
    (never parked for it), but SQS may keep both copies, so it is counted and logged apart."""
    if first_send_at is None:
        return Resend(duplicate_possible=False)
    if not fifo:
        return Resend(duplicate_possible=True)
    return Resend(duplicate_possible=True, late_by_ms=max(0, now_ms - first_send_at - window_seconds * 1000))

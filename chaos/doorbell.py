"""The doorbell under chaos (issue #14, ADR 0017): the Outbox table's real stream, delivered late, twice,
never, or out of order, to doorbell relays that overlap each other and the sweep.

`StreamFeed` tails the emulator's stream with `outbox.local.stream.StreamTail` (INSERT records only, as the
mapping filters, four polls a second as Lambda polls) and hands the records to `lanes` doorbell relays. It
plays an event source mapping with a parallelization factor: each record goes to a random lane (Lambda keeps
order per item, not per outbox shard, so two lanes can ring one shard at once); a lane runs one invocation
at a time, and its next batch is whatever became due for it meanwhile, at most `MAX_BATCH` records.

On the way the records are perturbed, each perturbation drawn on its own:
* dropped (a lost record, or one past the mapping's maximum age): nothing rings for it;
* duplicated: a second copy is delivered up to `max_delay_seconds` later, possibly in another lane;
* reordered: the record is held back `REORDER_HOLD_SECONDS`, so it arrives behind records written after it;
* delayed: a whole polled batch is held back up to `max_delay_seconds`.

None of it may cost more than latency: the sweep takes whatever no doorbell rang for. `StreamCounts` counts
what was done to the records and measures what came of it (records delivered behind a later one).
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

from outbox.local.stream import MAX_BATCH

STREAM_POLL_SECONDS: Final = 0.25
"""As `outbox serve` polls (Lambda polls a stream shard four times a second)."""
REORDER_HOLD_SECONDS: Final = (0.3, 1.5)
"""A reordered record waits longer than a poll: it is delivered behind records written after it."""


class Tail(Protocol):
    """What the feed reads: `outbox.local.stream.StreamTail` (a list of prepared events in the tests)."""

    def start(self) -> Any: ...

    def poll(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Perturbation:
    drop: float = 0.0
    """Probability that a record is never delivered."""
    duplicate: float = 0.0
    """Probability that a record is delivered a second time, later."""
    delay: float = 0.0
    """Probability that a polled batch is held back (uniformly up to `max_delay_seconds`)."""
    reorder: float = 0.0
    """Probability that a record is moved behind later records."""
    max_delay_seconds: float = 3.0


@dataclass
class StreamCounts:
    polls: int = 0
    poll_errors: int = 0
    records_seen: int = 0
    """INSERT records read from the stream (the mapping's filter applied)."""
    dropped: int = 0
    duplicated: int = 0
    delayed_batches: int = 0
    delayed: int = 0
    """Records in delayed batches."""
    reordered: int = 0
    batches: int = 0
    """Batches handed to doorbell relays (one invocation each)."""
    delivered: int = 0
    """Records in those batches, copies included."""
    delivered_out_of_order: int = 0
    """Delivered records whose stream sequence number is below one delivered before them (measured)."""
    undelivered_at_stop: int = 0
    """Records still held back or waiting in a lane when the chaos phase ended."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class StreamFeed:
    """Between a `StreamTail` and the doorbell relays: perturbs the records and batches them per lane."""

    def __init__(
        self,
        tail: Tail,
        *,
        lanes: int,
        perturbation: Perturbation,
        rng: random.Random,
        poll_seconds: float = STREAM_POLL_SECONDS,
    ) -> None:
        self._tail = tail
        self._perturbation = perturbation
        self._rng = rng
        self._poll_seconds = poll_seconds
        self._ready = threading.Condition()
        self._held: list[tuple[float, int, dict[str, Any]]] = []  # a heap by due time
        self._order = itertools.count()
        self._lanes: list[list[dict[str, Any]]] = [[] for _ in range(lanes)]
        self._latest_delivered = -1
        self.counts = StreamCounts()

    def start(self) -> StreamFeed:
        """Take the stream's current end (LATEST, as the mapping starts): call before anything is written."""
        self._tail.start()
        return self

    def run(self, stop: threading.Event) -> None:
        """Poll, perturb and release due records into lanes until `stop` is set."""
        while not stop.wait(self._poll_seconds):
            self.pump(time.monotonic())
        with self._ready:
            self._ready.notify_all()

    def pump(self, now: float) -> None:
        """One poll of the stream: its records perturbed and held, and whatever is due by `now` (a
        `time.monotonic()` value) handed to the lanes."""
        try:
            events = self._tail.poll()
        except Exception:  # an unfaulted client: an error here is the emulator's, counted, and read again
            with self._ready:
                self.counts.poll_errors += 1
            return
        with self._ready:
            self.counts.polls += 1
            for event in events:
                self._admit(event["Records"], now)
            if self._release(now):
                self._ready.notify_all()

    def take(self, lane: int, timeout: float) -> dict[str, Any] | None:
        """The lane's next batch as a Lambda event, waiting up to `timeout` for one; None if nothing came."""
        with self._ready:
            if not self._lanes[lane]:
                self._ready.wait(timeout)
            waiting = self._lanes[lane]
            if not waiting:
                return None
            records, self._lanes[lane] = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
            self.counts.batches += 1
            self.counts.delivered += len(records)
            for record in records:
                sequence = int(record["dynamodb"]["SequenceNumber"])
                if sequence < self._latest_delivered:
                    self.counts.delivered_out_of_order += 1
                self._latest_delivered = max(self._latest_delivered, sequence)
        return {"Records": records}

    def close(self) -> StreamCounts:
        """After the doorbell relays stopped: count what was never delivered."""
        with self._ready:
            self.counts.undelivered_at_stop = len(self._held) + sum(len(lane) for lane in self._lanes)
            return self.counts

    def _admit(self, records: list[dict[str, Any]], now: float) -> None:
        perturbation, rng, counts = self._perturbation, self._rng, self.counts
        due = now
        if rng.random() < perturbation.delay:
            due += rng.uniform(0, perturbation.max_delay_seconds)
            counts.delayed_batches += 1
            counts.delayed += len(records)
        for record in records:
            counts.records_seen += 1
            if rng.random() < perturbation.drop:
                counts.dropped += 1
                continue
            if rng.random() < perturbation.reorder:
                counts.reordered += 1
                self._hold(due + rng.uniform(*REORDER_HOLD_SECONDS), record)
            else:
                self._hold(due, record)
            if rng.random() < perturbation.duplicate:
                counts.duplicated += 1
                self._hold(now + rng.uniform(0, perturbation.max_delay_seconds), record)

    def _hold(self, due: float, record: dict[str, Any]) -> None:
        heapq.heappush(self._held, (due, next(self._order), record))

    def _release(self, now: float) -> bool:
        released = False
        while self._held and self._held[0][0] <= now:
            _, _, record = heapq.heappop(self._held)
            self._lanes[self._rng.randrange(len(self._lanes))].append(record)
            released = True
        return released

"""The relay: move outbox entries to SQS, then mark their messages QUEUED (docs/design.md §4).

Per shard, oldest entry first: claim a batch under a lease, fetch the payloads, send, and finalize each
accepted message (PENDING→QUEUED + entry deleted, one transaction). What was not accepted is rolled back
with backoff, poisoned, or held back to keep a FIFO group in order. Shards are worked in parallel and all
workers are joined before `run` returns.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.clients import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from outbox.core.domain import EntryState, Status, epoch_millis, time_ordered_id_millis
from outbox.core.settings import FIFO_RESEND_WINDOW_SECONDS
from relay.clock import Clock, SystemClock
from relay.entries import Entry, RunSummary
from relay.retry import RetryPolicy, backoff_seconds
from relay.sender import Outcome, Outgoing, Sender, SendResult
from relay.store import FinalizeResult, OutboxStore, ReadsUnprocessed, TransactionCancelled

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from outbox.core.settings import Settings

logger = Logger(service="outbox-relay", child=True)
_AWS_ERRORS: Final = (BotoCoreError, ClientError, TransactionCancelled, ReadsUnprocessed)
SEND_CALL_SECONDS: Final = float(CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS + 1)
"""The longest one SendMessageBatch attempt takes before botocore gives up on it (connect + read timeout),
plus a second for the clocks of two relays to disagree."""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    claim_batch_size: int = 50
    """Entries claimed, sent and finalized together: 50 messages fill a 100-action finalize transaction."""
    page_size: int = 250
    """Entries per `Query`: five claim batches (35 KB of 139-byte entries, 9 read units)."""
    parallel_shards: int = 4
    batch_margin_seconds: float = 3.0
    """A claim batch starts only with at least this much time before the deadline."""
    send_margin_seconds: float = SEND_CALL_SECONDS
    """An SQS call starts only while the batch's lease has at least this much left, so that no call is
    still sending when another relay may claim the same entries (ADR 0005)."""


class _Again(Exception):
    pass


@dataclass
class _Carry:
    """Entries read but not yet claimed, and the FIFO groups held back this run.

    One set of blocked groups serves many shards: a group lives in exactly one shard. Entries of one group
    come from one shard, in order, and stay in that order however carries are joined."""

    pending: list[Entry] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)


class Relay:
    def __init__(
        self,
        *,
        dynamodb: DynamoDBClient,
        sqs: SQSClient,
        settings: Settings,
        clock: Clock | None = None,
        retry_policy: RetryPolicy | None = None,
        config: RelayConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._retry = retry_policy or RetryPolicy()
        self._config = config or RelayConfig()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.store = OutboxStore(
            dynamodb,
            messages_table=settings.messages_table,
            outbox_table=settings.outbox_table,
            retention_days=settings.retention_days,
        )
        self._sender = Sender(sqs, settings.queue_url, retry_policy=self._retry, fifo=settings.fifo)

    def run(self, deadline: float) -> RunSummary:
        """Relay until the outbox is drained or `deadline` (a `clock.monotonic()` value) is near."""
        count = self._settings.outbox_shards
        start = self._rng.randrange(count)  # overlapping runs start on different shards, not on each other
        shards = iter([str((start + offset) % count) for offset in range(count)])
        lock = threading.Lock()

        def next_shard() -> str | None:
            with lock:
                return next(shards, None)

        summary = RunSummary()
        leftovers = _Carry()
        workers = max(1, min(count, self._config.parallel_shards))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay-shard") as pool:
            for worker_summary, carry in pool.map(lambda _: self._work(next_shard, deadline), range(workers)):
                summary.merge(worker_summary)
                leftovers.pending.extend(carry.pending)
                leftovers.blocked |= carry.blocked
        if leftovers.pending:
            self._guarded("carried entries", summary, partial(self._flush, leftovers, deadline, summary))
        return summary

    # -- one worker --------------------------------------------------------------------------------

    def _work(self, next_shard: Callable[[], str | None], deadline: float) -> tuple[RunSummary, _Carry]:
        """Drain shards one after another. Entries left over at the end of a shard (fewer than a claim
        batch) are carried into the next shard's batches rather than claimed alone, and what is left when
        the shards run out goes back to `run`, which claims every worker's rest together: a run pays for
        one partial batch, not one per shard (ADR 0012)."""
        summary = RunSummary()
        carry = _Carry()
        while (shard := next_shard()) is not None:
            drain = partial(self._drain_shard, shard, deadline, carry, summary)
            self._guarded(f"shard {shard}", summary, drain)
        return summary, carry

    def _guarded(self, what: str, summary: RunSummary, step: Callable[[], None]) -> None:
        """Run one step; an AWS error stops only it (its unclaimed entries wait for the next run)."""
        try:
            step()
        except _AWS_ERRORS as exc:
            summary.drained = False
            summary.relay_errors += 1
            summary.errors.append(f"{what}: {_describe(exc)}")
            logger.warning("relay step stopped", step=what, error=_describe(exc))

    def _drain_shard(self, shard: str, deadline: float, carry: _Carry, summary: RunSummary) -> None:
        start_key: dict[str, Any] | None = None
        first_page = True
        while True:
            if self._out_of_time(deadline, carry, summary):
                return
            page, start_key = self.store.query_page(shard, start_key, limit=self._config.page_size)
            now_ms = epoch_millis(self._clock.now())
            if first_page:
                summary.oldest_pending_age_seconds = max(
                    summary.oldest_pending_age_seconds, _oldest_age(page, now_ms)
                )
                first_page = False
            carry.pending.extend(entry for entry in page if self._eligible(entry, now_ms, carry.blocked))
            while len(carry.pending) >= self._config.claim_batch_size:
                if not self._take_batch(carry, deadline, summary):
                    return
            if start_key is None:
                return

    def _flush(self, carry: _Carry, deadline: float, summary: RunSummary) -> None:
        while carry.pending:
            if not self._take_batch(carry, deadline, summary):
                return

    def _out_of_time(self, deadline: float, carry: _Carry, summary: RunSummary) -> bool:
        """Too close to the deadline for another page or batch: drop what is carried (nothing of it is
        claimed; the next run reads it again) and say the outbox was not drained."""
        if self._seconds_left(deadline) >= self._config.batch_margin_seconds:
            return False
        summary.drained = False
        carry.pending.clear()
        return True

    def _take_batch(self, carry: _Carry, deadline: float, summary: RunSummary) -> bool:
        """Process the next claim batch from the carry; False when the deadline leaves no time for it."""
        if self._out_of_time(deadline, carry, summary):
            return False
        size = self._config.claim_batch_size
        chunk, carry.pending[:] = carry.pending[:size], carry.pending[size:]
        batch = [entry for entry in chunk if not self._is_blocked(entry, carry.blocked)]
        if not batch:
            return True
        try:
            self._process_batch(batch, deadline, carry.blocked, summary)
        except BaseException:
            # The batch stopped part way (its entries may stay claimed until their lease runs out); the
            # carry goes on into other shards' batches, so its groups' later entries must wait too.
            for entry in batch:
                self._block(entry, carry.blocked)
            raise
        return True

    def _eligible(self, entry: Entry, now_ms: int, blocked: set[str]) -> bool:
        """Claimable now and not behind a blocked entry of its FIFO group; blocks the group otherwise."""
        if self._is_blocked(entry, blocked):
            return False
        if entry.claimable(now_ms):
            return True
        self._block(entry, blocked)
        return False

    def _is_blocked(self, entry: Entry, blocked: set[str]) -> bool:
        return self._settings.fifo and entry.group_id in blocked

    def _block(self, entry: Entry, blocked: set[str]) -> None:
        if self._settings.fifo and entry.group_id is not None:
            blocked.add(entry.group_id)

    # -- one claim batch ---------------------------------------------------------------------------

    def _process_batch(
        self, batch: list[Entry], deadline: float, blocked: set[str], summary: RunSummary
    ) -> None:
        started = self._clock.monotonic()
        token = str(uuid.uuid4())
        now_ms = epoch_millis(self._clock.now())
        lease_until_ms = now_ms + self._settings.lease_seconds * 1000
        lease_deadline = started + self._settings.lease_seconds

        def seconds_left() -> float:
            return min(deadline, lease_deadline) - self._clock.monotonic() - 1.0

        def send_window() -> float:
            """Seconds in which an SQS call may still start: it must end before the lease does."""
            now = self._clock.monotonic()
            return min(deadline - now, lease_deadline - now - self._config.send_margin_seconds)

        claimed, refused = self._claim(
            batch,
            token=token,
            now_ms=now_ms,
            lease_until_ms=lease_until_ms,
            seconds_left=seconds_left,
            summary=summary,
        )
        refused_ids = {entry.entry_id for entry in refused}
        claimed_ids = {entry.entry_id for entry in claimed}
        summary.claims_lost += len(refused)
        to_send: list[Entry] = []
        for entry in batch:
            if entry.entry_id in refused_ids or self._is_blocked(entry, blocked):
                self._block(entry, blocked)
                if entry.entry_id in claimed_ids:
                    self._release(entry, token, now_ms, summary)
                continue
            if entry.entry_id in claimed_ids:
                to_send.append(entry)
        outgoing = self._load(to_send, token, seconds_left, summary)
        results, stats = self._sender.send(outgoing, deadline=send_window)
        summary.retries += stats.retries
        summary.relay_errors += stats.splits
        summary.duplicates_possible += stats.resent_after_unknown
        if stats.out_of_time:
            summary.drained = False
            summary.errors.append(f"{stats.out_of_time} message(s) held back: the lease left no time to send")
        for result in results:
            if result.maybe_sent:
                self._note_resend(result.outgoing.entry, summary)
        accepted = [result for result in results if result.outcome is Outcome.ACCEPTED]
        self._finalize(accepted, token, seconds_left, summary)
        for result in results:
            if result.outcome is not Outcome.ACCEPTED:
                self._block(result.outgoing.entry, blocked)
                self._settle_unsent(result, token, now_ms, summary)
        summary.batches += 1
        summary.batch_seconds_total += self._clock.monotonic() - started

    def _claim(
        self,
        batch: list[Entry],
        *,
        token: str,
        now_ms: int,
        lease_until_ms: int,
        seconds_left: Callable[[], float],
        summary: RunSummary,
    ) -> tuple[list[Entry], list[Entry]]:
        for attempt in self._retry.retrying(budget_seconds=seconds_left(), retry_on=_AWS_ERRORS):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    summary.retries += 1
                return self.store.claim(batch, token=token, now_ms=now_ms, lease_until_ms=lease_until_ms)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _load(
        self, entries: list[Entry], token: str, seconds_left: Callable[[], float], summary: RunSummary
    ) -> list[Outgoing]:
        """Payloads for the claimed entries. A message already moved on (or gone) takes its entry with it."""
        if not entries:
            return []
        messages = self.store.fetch_messages(
            [entry.message_id for entry in entries], seconds_left=seconds_left
        )
        outgoing: list[Outgoing] = []
        for entry in entries:
            item = messages.get(entry.message_id)
            if item is None:
                summary.relay_errors += 1
                summary.errors.append(f"message {entry.message_id} missing: entry removed")
                logger.error("message missing for outbox entry", message_id=entry.message_id)
                self.store.delete_entry(entry, token=token)
                continue
            if item["status"]["S"] != Status.PENDING:
                summary.stale += 1
                self.store.delete_entry(entry, token=token)
                continue
            attributes = {name: value["S"] for name, value in item.get("attributes", {}).get("M", {}).items()}
            group_id = item["group_id"]["S"] if "group_id" in item else None
            outgoing.append(Outgoing(entry, item["payload"]["S"], attributes, group_id))
        return outgoing

    def _note_resend(self, entry: Entry, summary: RunSummary) -> None:
        """A message this batch sent (or may have) that an earlier claim may already have put in the queue
        (`first_send_at` is stamped at claim and removed again when that claim certainly sent nothing).
        docs/design.md §4.5: a FIFO resend past the 4-minute window is still sent (never parked for it),
        but SQS may keep both copies, so it is counted and logged."""
        if entry.first_send_at is None:
            return
        summary.duplicates_possible += 1
        if not self._settings.fifo:
            return
        late_by_ms = epoch_millis(self._clock.now()) - entry.first_send_at - FIFO_RESEND_WINDOW_SECONDS * 1000
        if late_by_ms > 0:
            summary.resent_after_window += 1
            logger.warning(
                "FIFO resend after the deduplication margin: SQS may deliver it twice",
                message_id=entry.message_id,
                late_by_seconds=round(late_by_ms / 1000, 1),
            )

    def _finalize(
        self, accepted: list[SendResult], token: str, seconds_left: Callable[[], float], summary: RunSummary
    ) -> None:
        pending = [(result.outgoing.entry, result.sqs_message_id or "") for result in accepted]
        if not pending:
            return
        try:
            for attempt in self._retry.retrying(
                budget_seconds=seconds_left(), retry_on=(_Again, *_AWS_ERRORS)
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        summary.retries += 1
                    outcome = self.store.finalize(pending, token=token, now=self._clock.now())
                    self._record_finalize(outcome, token, summary)
                    retry_ids = {entry.entry_id for entry in outcome.retry}
                    pending = [pair for pair in pending if pair[0].entry_id in retry_ids]
                    if pending:
                        raise _Again
        except (_Again, *_AWS_ERRORS) as exc:
            # Sent but not finalized: the lease expires and a later run resends with the same message_id.
            summary.finalize_failed += len(pending)
            summary.drained = False
            summary.errors.append(f"finalize failed for {len(pending)} message(s): {_describe(exc)}")
            logger.warning(
                "finalize failed; entries will be resent after their lease",
                message_ids=[entry.message_id for entry, _ in pending],
                error=_describe(exc),
            )

    def _record_finalize(self, outcome: FinalizeResult, token: str, summary: RunSummary) -> None:
        summary.sent += len(outcome.done) + len(outcome.already_moved)
        for entry in outcome.already_moved:
            self.store.delete_entry(entry, token=token)
        for entry in outcome.missing:
            summary.relay_errors += 1
            summary.errors.append(f"message {entry.message_id} missing at finalize: entry removed")
            logger.error("message missing at finalize", message_id=entry.message_id)
            self.store.delete_entry(entry, token=token)
        summary.claims_lost += len(outcome.claim_lost)

    def _settle_unsent(self, result: SendResult, token: str, claimed_at_ms: int, summary: RunSummary) -> None:
        entry = result.outgoing.entry
        try:
            if result.outcome is Outcome.HELD_BACK:
                self._release(entry, token, claimed_at_ms, summary)
                return
            # Certainly never in the queue: this claim's resend mark goes with the release or the poison.
            unstamp = None if result.maybe_sent else _own_stamp(entry, claimed_at_ms)
            counted = result.outcome in {Outcome.FAILED, Outcome.REJECTED}
            attempts = entry.attempts + (1 if counted else 0)
            error = result.error or result.outcome.value
            if result.outcome is Outcome.REJECTED or attempts >= self._settings.max_attempts:
                if self.store.poison(
                    entry,
                    token=token,
                    attempts=attempts,
                    error=error,
                    now=self._clock.now(),
                    unstamp_claimed_at_ms=unstamp,
                ):
                    summary.poisoned += 1
                    logger.warning(
                        "message poisoned", message_id=entry.message_id, error=error, attempts=attempts
                    )
                return
            delay = backoff_seconds(
                attempts, cap_seconds=self._settings.max_backoff_seconds, jitter=self._rng.random()
            )
            next_attempt = epoch_millis(self._clock.now()) + int(delay * 1000)
            if self.store.release(
                entry,
                token=token,
                counted=counted,
                next_attempt_at_ms=next_attempt,
                error=error,
                unstamp_claimed_at_ms=unstamp,
            ):
                summary.rolled_back += 1
                summary.errors.append(f"send of {entry.message_id} rolled back: {error}")
                logger.info(
                    "send rolled back",
                    message_id=entry.message_id,
                    outcome=result.outcome.value,
                    attempts=attempts,
                    error=error,
                )
        except _AWS_ERRORS as exc:  # the lease runs out and the entry is tried again: nothing is lost
            summary.relay_errors += 1
            summary.errors.append(f"could not settle {entry.message_id}: {_describe(exc)}")

    def _release(self, entry: Entry, token: str, claimed_at_ms: int, summary: RunSummary) -> None:
        """Give back a claimed entry that was not sent (held back for FIFO order, or out of lease time):
        no attempt, no backoff, and the claim's `first_send_at` stamp goes with it."""
        try:
            if self.store.release(
                entry, token=token, counted=False, unstamp_claimed_at_ms=_own_stamp(entry, claimed_at_ms)
            ):
                summary.held_back += 1
        except _AWS_ERRORS as exc:
            summary.relay_errors += 1
            summary.errors.append(f"could not release {entry.message_id}: {_describe(exc)}")

    def _seconds_left(self, deadline: float) -> float:
        return deadline - self._clock.monotonic()


def _own_stamp(entry: Entry, claimed_at_ms: int) -> int | None:
    """The `first_send_at` this claim set, if it set one: only when the entry, as read, had none."""
    return claimed_at_ms if entry.first_send_at is None else None


def _oldest_age(page: list[Entry], now_ms: int) -> float:
    for entry in page:
        if entry.state == EntryState.READY:
            return max(0.0, (now_ms - time_ordered_id_millis(entry.entry_id)) / 1000)
    return 0.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    if isinstance(exc, TransactionCancelled):
        return f"TransactionCanceled {exc.reasons}"
    if isinstance(exc, ReadsUnprocessed):
        return str(exc)
    return type(exc).__name__

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
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.clients import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from outbox.core.domain import EntryState, Status, epoch_millis, time_ordered_id_millis
from relay.clock import Clock, SystemClock
from relay.entries import Entry, RunSummary
from relay.policy import FifoGate, Settle, Settlement, hold, judge_resend, retry_at_ms, settle_unsent
from relay.retry import RetryPolicy
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


@dataclass
class _Worker:
    """What one worker carries through a run: the summary it adds to, the entries read but not yet
    claimed, and the FIFO groups blocked this run.

    One set of blocked groups serves many shards: a group lives in exactly one shard. Entries of one group
    come from one shard, in order, and stay in that order however workers' leftovers are joined."""

    deadline: float
    summary: RunSummary = field(default_factory=RunSummary)
    pending: list[Entry] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)

    def fault(self, message: str) -> None:
        """A relay error: counted, and its message kept for the run's report."""
        self.summary.relay_errors += 1
        self.summary.errors.append(message)

    def count_retry(self) -> None:
        """tenacity's hook: another attempt of a claim or a finalize is starting."""
        self.summary.retries += 1


@dataclass(frozen=True, slots=True)
class _Lease:
    """One claim batch's lease: the token its writes are fenced by, and the time it leaves."""

    clock: Clock
    token: str
    claimed_at_ms: int
    """Epoch milliseconds of the claim: the entries' `first_send_at` when this claim set it."""
    lease_until_ms: int
    started: float
    deadline: float
    """The run's deadline (`clock.monotonic()`)."""
    lease_deadline: float
    send_margin_seconds: float

    def seconds_left(self) -> float:
        return min(self.deadline, self.lease_deadline) - self.clock.monotonic() - 1.0

    def send_window(self) -> float:
        """Seconds in which an SQS call may still start: it must end before the lease does."""
        now = self.clock.monotonic()
        return min(self.deadline - now, self.lease_deadline - now - self.send_margin_seconds)


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
        self._gate = FifoGate(fifo=settings.fifo)
        self.store = OutboxStore(
            dynamodb,
            messages_table=settings.messages_table,
            outbox_table=settings.outbox_table,
            retention_days=settings.retention_days,
        )
        self._sender = Sender(sqs, settings.queue_url, retry_policy=self._retry, fifo=settings.fifo)

    def run(self, deadline: float, shards: Collection[str] | None = None) -> RunSummary:
        """Relay until the outbox is drained or `deadline` (a `clock.monotonic()` value) is near.

        `shards`: only these shards (a doorbell names the shards its stream records came from); by
        default every shard, as the scheduled sweep does. A name that is not a shard of this outbox is
        ignored: the stream of a table with more shards than the settings say still only wakes ours."""
        count = self._settings.outbox_shards
        start = self._rng.randrange(count)  # overlapping runs start on different shards, not on each other
        order = [str((start + offset) % count) for offset in range(count)]
        if shards is not None:
            order = [shard for shard in order if shard in shards]
        queue = iter(order)
        lock = threading.Lock()

        def next_shard() -> str | None:
            with lock:
                return next(queue, None)

        summary = RunSummary()
        leftovers = _Worker(deadline, summary)
        workers = max(1, min(len(order), self._config.parallel_shards))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay-shard") as pool:
            for worker in pool.map(lambda _: self._work(next_shard, deadline), range(workers)):
                summary.merge(worker.summary)
                leftovers.pending.extend(worker.pending)
                leftovers.blocked |= worker.blocked
        if leftovers.pending:
            self._guarded("carried entries", leftovers, partial(self._flush, leftovers))
        return summary

    # -- one worker --------------------------------------------------------------------------------

    def _work(self, next_shard: Callable[[], str | None], deadline: float) -> _Worker:
        """Drain shards one after another. Entries left over at the end of a shard (fewer than a claim
        batch) are carried into the next shard's batches rather than claimed alone, and what is left when
        the shards run out goes back to `run`, which claims every worker's rest together: a run pays for
        one partial batch, not one per shard (ADR 0012)."""
        worker = _Worker(deadline)
        while (shard := next_shard()) is not None:
            self._guarded(f"shard {shard}", worker, partial(self._drain_shard, shard, worker))
        return worker

    def _guarded(self, what: str, worker: _Worker, step: Callable[[], None]) -> None:
        """Run one step; an AWS error stops only it (its unclaimed entries wait for the next run)."""
        try:
            step()
        except _AWS_ERRORS as exc:
            worker.summary.drained = False
            worker.fault(f"{what}: {_describe(exc)}")
            logger.warning("relay step stopped", step=what, error=_describe(exc))

    def _drain_shard(self, shard: str, worker: _Worker) -> None:
        start_key: dict[str, Any] | None = None
        first_page = True
        while True:
            if self._out_of_time(worker):
                return
            page, start_key = self.store.query_page(shard, start_key, limit=self._config.page_size)
            now_ms = epoch_millis(self._clock.now())
            if first_page:
                worker.summary.oldest_pending_age_seconds = max(
                    worker.summary.oldest_pending_age_seconds, _oldest_age(page, now_ms)
                )
                first_page = False
            admission = self._gate.admit(page, now_ms=now_ms, blocked=worker.blocked)
            worker.pending.extend(admission.entries)
            worker.blocked |= admission.blocks
            while len(worker.pending) >= self._config.claim_batch_size:
                if not self._take_batch(worker):
                    return
            if start_key is None:
                return

    def _flush(self, worker: _Worker) -> None:
        while worker.pending:
            if not self._take_batch(worker):
                return

    def _out_of_time(self, worker: _Worker) -> bool:
        """Too close to the deadline for another page or batch: drop what is carried (nothing of it is
        claimed; the next run reads it again) and say the outbox was not drained."""
        if worker.deadline - self._clock.monotonic() >= self._config.batch_margin_seconds:
            return False
        worker.summary.drained = False
        worker.pending.clear()
        return True

    def _take_batch(self, worker: _Worker) -> bool:
        """Process the next claim batch from the carry; False when the deadline leaves no time for it."""
        if self._out_of_time(worker):
            return False
        size = self._config.claim_batch_size
        chunk, worker.pending[:] = worker.pending[:size], worker.pending[size:]
        batch = [entry for entry in chunk if not self._gate.holds_back(entry, worker.blocked)]
        if not batch:
            return True
        try:
            self._process_batch(batch, worker)
        except BaseException:
            # The batch stopped part way (its entries may stay claimed until their lease runs out); the
            # carry goes on into other shards' batches, so its groups' later entries must wait too.
            worker.blocked |= self._gate.blocked_groups(batch)
            raise
        return True

    # -- one claim batch ---------------------------------------------------------------------------

    def _process_batch(self, batch: list[Entry], worker: _Worker) -> None:
        """Claim, load, send, finalize what SQS accepted, and settle the rest."""
        lease = self._new_lease(worker.deadline)
        claimed, refused = self._claim(batch, lease, worker)
        worker.summary.claims_lost += len(refused)
        sorted_batch = self._gate.sort_claimed(
            batch,
            claimed={entry.entry_id for entry in claimed},
            refused={entry.entry_id for entry in refused},
            blocked=worker.blocked,
        )
        worker.blocked |= sorted_batch.blocks
        for entry in sorted_batch.to_release:
            self._hold(entry, hold(entry, claimed_at_ms=lease.claimed_at_ms), lease, worker)
        results = self._send(self._load(sorted_batch.to_send, lease, worker), lease, worker)
        self._finalize([result for result in results if result.outcome is Outcome.ACCEPTED], lease, worker)
        unsent = [result for result in results if result.outcome is not Outcome.ACCEPTED]
        worker.blocked |= self._gate.blocked_groups(result.outgoing.entry for result in unsent)
        for result in unsent:
            self._settle_unsent(result, lease, worker)
        worker.summary.batches += 1
        worker.summary.batch_seconds_total += self._clock.monotonic() - lease.started

    def _new_lease(self, deadline: float) -> _Lease:
        started = self._clock.monotonic()
        token = str(uuid.uuid4())
        claimed_at_ms = epoch_millis(self._clock.now())
        return _Lease(
            clock=self._clock,
            token=token,
            claimed_at_ms=claimed_at_ms,
            lease_until_ms=claimed_at_ms + self._settings.lease_seconds * 1000,
            started=started,
            deadline=deadline,
            lease_deadline=started + self._settings.lease_seconds,
            send_margin_seconds=self._config.send_margin_seconds,
        )

    def _claim(self, batch: list[Entry], lease: _Lease, worker: _Worker) -> tuple[list[Entry], list[Entry]]:
        retrying = self._retry.retrying(
            budget_seconds=lease.seconds_left(), retry_on=_AWS_ERRORS, before_retry=worker.count_retry
        )
        return retrying(
            self.store.claim,
            batch,
            token=lease.token,
            now_ms=lease.claimed_at_ms,
            lease_until_ms=lease.lease_until_ms,
        )

    def _load(self, entries: Sequence[Entry], lease: _Lease, worker: _Worker) -> list[Outgoing]:
        """Payloads for the claimed entries. A message already moved on (or gone) takes its entry with it."""
        if not entries:
            return []
        messages = self.store.fetch_messages(
            [entry.message_id for entry in entries], seconds_left=lease.seconds_left
        )
        outgoing: list[Outgoing] = []
        for entry in entries:
            item = messages.get(entry.message_id)
            if item is None:
                worker.fault(f"message {entry.message_id} missing: entry removed")
                logger.error("message missing for outbox entry", message_id=entry.message_id)
                self.store.delete_entry(entry, token=lease.token)
                continue
            if item["status"]["S"] != Status.PENDING:
                worker.summary.stale += 1
                self.store.delete_entry(entry, token=lease.token)
                continue
            outgoing.append(_outgoing(entry, item))
        return outgoing

    def _send(self, outgoing: list[Outgoing], lease: _Lease, worker: _Worker) -> list[SendResult]:
        results, stats = self._sender.send(outgoing, deadline=lease.send_window)
        summary = worker.summary
        summary.retries += stats.retries
        summary.relay_errors += stats.splits
        summary.duplicates_possible += stats.resent_after_unknown
        if stats.out_of_time:
            summary.drained = False
            summary.errors.append(f"{stats.out_of_time} message(s) held back: the lease left no time to send")
        now_ms = epoch_millis(self._clock.now())
        for result in results:
            if result.maybe_sent:
                self._note_resend(result.outgoing.entry, now_ms, worker)
        return results

    def _note_resend(self, entry: Entry, now_ms: int, worker: _Worker) -> None:
        """Count a send (or maybe a send) that an earlier claim may already have made (`judge_resend`)."""
        resend = judge_resend(entry.first_send_at, now_ms=now_ms, fifo=self._settings.fifo)
        if resend.duplicate_possible:
            worker.summary.duplicates_possible += 1
        if resend.after_window:
            worker.summary.resent_after_window += 1
            logger.warning(
                "FIFO resend after the deduplication margin: SQS may deliver it twice",
                message_id=entry.message_id,
                late_by_seconds=round(resend.late_by_ms / 1000, 1),
            )

    def _finalize(self, accepted: list[SendResult], lease: _Lease, worker: _Worker) -> None:
        """Mark the accepted messages QUEUED and delete their entries; the undecided ones of a cancelled
        transaction are finalized again, as a failed call is."""
        pending = [(result.outgoing.entry, result.sqs_message_id or "") for result in accepted]
        if not pending:
            return

        def attempt() -> list[tuple[Entry, str]]:
            nonlocal pending
            outcome = self.store.finalize(pending, token=lease.token, now=self._clock.now())
            self._record_finalize(outcome, lease, worker)
            retry_ids = {entry.entry_id for entry in outcome.retry}
            pending = [pair for pair in pending if pair[0].entry_id in retry_ids]
            return pending

        retrying = self._retry.retrying(
            budget_seconds=lease.seconds_left(),
            retry_on=_AWS_ERRORS,
            retry_while=bool,
            before_retry=worker.count_retry,
        )
        try:
            retrying(attempt)
        except _AWS_ERRORS as exc:
            self._finalize_failed(pending, _describe(exc), worker)
            return
        if pending:
            self._finalize_failed(pending, "still undecided when the retries ran out", worker)

    def _finalize_failed(self, pending: list[tuple[Entry, str]], reason: str, worker: _Worker) -> None:
        """Sent but not finalized: the lease expires and a later run resends with the same message_id."""
        worker.summary.finalize_failed += len(pending)
        worker.summary.drained = False
        worker.summary.errors.append(f"finalize failed for {len(pending)} message(s): {reason}")
        logger.warning(
            "finalize failed; entries will be resent after their lease",
            message_ids=[entry.message_id for entry, _ in pending],
            error=reason,
        )

    def _record_finalize(self, outcome: FinalizeResult, lease: _Lease, worker: _Worker) -> None:
        worker.summary.sent += len(outcome.done) + len(outcome.already_moved)
        for entry in outcome.already_moved:
            self.store.delete_entry(entry, token=lease.token)
        for entry in outcome.missing:
            worker.fault(f"message {entry.message_id} missing at finalize: entry removed")
            logger.error("message missing at finalize", message_id=entry.message_id)
            self.store.delete_entry(entry, token=lease.token)
        worker.summary.claims_lost += len(outcome.claim_lost)

    # -- what was not sent -------------------------------------------------------------------------

    def _settle_unsent(self, result: SendResult, lease: _Lease, worker: _Worker) -> None:
        """Carry out `settle_unsent`'s decision for an entry whose send was not accepted."""
        entry = result.outgoing.entry
        settlement = settle_unsent(
            result, claimed_at_ms=lease.claimed_at_ms, max_attempts=self._settings.max_attempts
        )
        if settlement.action is Settle.HOLD:
            self._hold(entry, settlement, lease, worker)
            return
        try:
            if settlement.action is Settle.POISON:
                self._poison(entry, settlement, lease, worker)
            else:
                self._roll_back(result, settlement, lease, worker)
        except _AWS_ERRORS as exc:  # the lease runs out and the entry is tried again: nothing is lost
            worker.fault(f"could not settle {entry.message_id}: {_describe(exc)}")

    def _poison(self, entry: Entry, settlement: Settlement, lease: _Lease, worker: _Worker) -> None:
        if self.store.poison(
            entry,
            token=lease.token,
            attempts=settlement.attempts,
            error=settlement.error,
            now=self._clock.now(),
            unstamp_claimed_at_ms=settlement.unstamp_claimed_at_ms,
        ):
            worker.summary.poisoned += 1
            logger.warning(
                "message poisoned",
                message_id=entry.message_id,
                error=settlement.error,
                attempts=settlement.attempts,
            )

    def _roll_back(self, result: SendResult, settlement: Settlement, lease: _Lease, worker: _Worker) -> None:
        entry = result.outgoing.entry
        jitter = self._rng.random()
        next_attempt_at_ms = retry_at_ms(
            epoch_millis(self._clock.now()),
            settlement.attempts,
            cap_seconds=self._settings.max_backoff_seconds,
            jitter=jitter,
        )
        if self.store.release(
            entry,
            token=lease.token,
            counted=settlement.counted,
            next_attempt_at_ms=next_attempt_at_ms,
            error=settlement.error,
            unstamp_claimed_at_ms=settlement.unstamp_claimed_at_ms,
        ):
            worker.summary.rolled_back += 1
            worker.summary.errors.append(f"send of {entry.message_id} rolled back: {settlement.error}")
            logger.info(
                "send rolled back",
                message_id=entry.message_id,
                outcome=result.outcome.value,
                attempts=settlement.attempts,
                error=settlement.error,
            )

    def _hold(self, entry: Entry, settlement: Settlement, lease: _Lease, worker: _Worker) -> None:
        """Give back a claimed entry that was not sent (held back for FIFO order, or out of lease time):
        no attempt, no backoff, and the claim's `first_send_at` stamp goes with it."""
        try:
            if self.store.release(
                entry,
                token=lease.token,
                counted=False,
                unstamp_claimed_at_ms=settlement.unstamp_claimed_at_ms,
            ):
                worker.summary.held_back += 1
        except _AWS_ERRORS as exc:
            worker.fault(f"could not release {entry.message_id}: {_describe(exc)}")


def _outgoing(entry: Entry, item: dict[str, Any]) -> Outgoing:
    """The message as it goes to SQS: its payload and attributes as stored at ingest."""
    attributes = {name: value["S"] for name, value in item.get("attributes", {}).get("M", {}).items()}
    group_id = item["group_id"]["S"] if "group_id" in item else None
    trace_header = item["trace_header"]["S"] if "trace_header" in item else None
    return Outgoing(entry, item["payload"]["S"], attributes, group_id, trace_header)


def _oldest_age(page: list[Entry], now_ms: int) -> float:
    for entry in page:
        if entry.state == EntryState.READY:
            return max(0.0, (now_ms - time_ordered_id_millis(entry.entry_id)) / 1000)
    return 0.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    if isinstance(exc, TransactionCancelled):
        return f"TransactionCanceled {list(exc.codes)}"
    if isinstance(exc, ReadsUnprocessed):
        return str(exc)
    return type(exc).__name__

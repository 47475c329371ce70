"""The relay: move outbox entries to SQS, then mark their messages QUEUED (docs/design.md §4).

Per shard (ADR 0018): acquire the shard's fenced lease (refused: another relay drains it, skip it, or wait
for it up to one lease when the run was asked for a full pass, as `outbox relay --once` is); then,
oldest entry first, batch by batch: renew the lease with the batch's watermark, fetch the payloads, send,
and finalize the accepted messages (the lease's `ConditionCheck`, then PENDING→QUEUED + entry deleted per
message, one transaction). What was not accepted is rolled back with backoff or poisoned (each behind the
lease's check too), or left for the next pass to keep a FIFO group in order. The lease is released when
the shard is done, and the shard read once more, so that an entry whose doorbell found the lease held is
not left behind. Shards are worked in parallel and all workers are joined before `run` returns.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.clients import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from outbox.core.domain import EntryState, Status, epoch_millis, time_ordered_id_millis
from outbox.data.claim_check import pointer_attributes, pointer_body
from relay.clock import Clock, SystemClock
from relay.entries import Entry, RunSummary
from relay.leases import LeaseLost, ShardLease, ShardLeases
from relay.policy import (
    FifoGate,
    Settle,
    Settlement,
    first_send_time,
    judge_resend,
    retry_at_ms,
    settle_unsent,
)
from relay.retry import RetryPolicy
from relay.sender import Outcome, Outgoing, Sender, SendResult
from relay.store import (
    FinalizeResult,
    OutboxStore,
    PayloadUnavailable,
    ReadsUnprocessed,
    TransactionCancelled,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from outbox.core.settings import Settings
    from outbox.data.claim_check import PayloadObject

logger = Logger(service="outbox-relay", child=True)
_AWS_ERRORS: Final = (BotoCoreError, ClientError, TransactionCancelled, ReadsUnprocessed)
SEND_CALL_SECONDS: Final = float(CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS + 1)
"""The longest one SendMessageBatch attempt takes before botocore gives up on it (connect + read timeout),
plus a second for the clocks of two relays to disagree."""
BATCH_SIZE: Final = 49
"""Entries sent and finalized together: the lease's check and 2 actions x 49 fill a finalize transaction
(99 of DynamoDB's 100 actions)."""
BUSY_SHARD_POLL_SECONDS: Final = 0.5
"""How often a run that waits for busy shards tries their leases again."""
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    batch_size: int = BATCH_SIZE
    """Entries sent and finalized together, under one renew of the shard's lease (at most `BATCH_SIZE`)."""
    page_size: int = 5 * BATCH_SIZE
    """Entries per `Query`: five batches (34 KB of 139-byte entries, 9 read units)."""
    parallel_shards: int = 4
    batch_margin_seconds: float = 3.0
    """A batch starts only with at least this much time before the deadline."""
    send_margin_seconds: float = SEND_CALL_SECONDS
    """An SQS call starts only while the shard's lease has at least this much left since its last renew,
    so that no call is still sending when another relay may take the shard over (ADR 0005, ADR 0018)."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= BATCH_SIZE:
            raise ValueError(
                f"batch_size must be 1..{BATCH_SIZE}: a finalize holds the lease check + 2 per entry"
            )


@dataclass
class _Worker:
    """What one worker carries through a run: the summary it adds to, and the FIFO groups blocked this run
    (a group lives in exactly one shard, so one set serves every shard of the worker)."""

    deadline: float
    wait_for_busy: bool = False
    """Wait up to one lease for a shard another relay holds instead of skipping it (a full pass)."""
    summary: RunSummary = field(default_factory=RunSummary)
    blocked: set[str] = field(default_factory=set)

    def fault(self, message: str) -> None:
        """A relay error: counted, and its message kept for the run's report."""
        self.summary.relay_errors += 1
        self.summary.errors.append(message)

    def count_retry(self) -> None:
        """tenacity's hook: another attempt of a lease write, a finalize or a settlement is starting."""
        self.summary.retries += 1


@dataclass
class _Shard:
    """One acquisition of a shard's lease, and what the passes over the shard in this run saw."""

    name: str
    lease: ShardLease
    seen: set[str]
    """Entry ids read by this run's passes over the shard: the read after the release looks for others."""
    keep: bool = False
    """Do not release: a write under the lease failed with the lease lost or its outcome unknown, so its
    watermark must stay for the next holder to count the resends (the lease expires instead)."""


@dataclass(frozen=True, slots=True)
class _Window:
    """One batch's time: the lease as renewed for it, and the run's deadline."""

    clock: Clock
    renewed_at_ms: int
    """Epoch milliseconds of the batch's renew: its `sending_since`, and the `first_send_at` a rollback of
    a send that may have reached SQS stamps."""
    started: float
    deadline: float
    """The run's deadline (`clock.monotonic()`)."""
    lease_deadline: float
    """When the renewed lease ends (`clock.monotonic()`), measured from before the renew was sent."""
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
        sleep: Callable[[float], None] = time.sleep,
        s3: Callable[[], S3Client] | None = None,
    ) -> None:
        """`s3`: makes the S3 client for the `HeadObject` of a payload in S3 (ADR 0023), called only when a
        batch holds one; by default `outbox.core.clients.s3_client`."""
        self._settings = settings
        self._clock = clock or SystemClock()
        self._retry = retry_policy or RetryPolicy()
        self._config = config or RelayConfig()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._sleep = sleep
        self._gate = FifoGate(fifo=settings.fifo)
        self.store = OutboxStore(
            dynamodb,
            messages_table=settings.messages_table,
            outbox_table=settings.outbox_table,
            retention_days=settings.retention_days,
            payloads_table=settings.payloads_table,
            **({"s3": s3} if s3 is not None else {}),
        )
        self.leases = ShardLeases(
            dynamodb, outbox_table=settings.outbox_table, lease_seconds=settings.lease_seconds
        )
        self._sender = Sender(sqs, settings.queue_url, retry_policy=self._retry, fifo=settings.fifo)

    def run(
        self, deadline: float, shards: Collection[str] | None = None, *, wait_for_busy: bool = False
    ) -> RunSummary:
        """Relay until the outbox is drained or `deadline` (a `clock.monotonic()` value) is near.

        `shards`: only these shards (a doorbell names the shards its stream records came from); by
        default every shard, as the scheduled sweep does. A name that is not a shard of this outbox is
        ignored: the stream of a table with more shards than the settings say still only wakes ours (and
        a lease's own partition, `lease#n`, is no shard).

        `wait_for_busy`: a shard another relay holds is waited for, up to one lease (its holder releases
        it, or the lease runs out and is taken over), instead of skipped; one still held after that is
        counted in `shards_busy` and makes the run undrained. A full pass for an operator (`outbox relay
        --once`); the schedule and the doorbell skip busy shards, whose holder drains them."""
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
        workers = max(1, min(len(order), self._config.parallel_shards))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relay-shard") as pool:
            for worker in pool.map(
                lambda _: self._work(next_shard, _Worker(deadline, wait_for_busy)), range(workers)
            ):
                summary.merge(worker.summary)
        return summary

    # -- one worker --------------------------------------------------------------------------------

    def _work(self, next_shard: Callable[[], str | None], worker: _Worker) -> _Worker:
        """Drain shards one after another, each under its own lease; a shard's batches are its own
        (ADR 0018: the carry of ADR 0012 would mix leases in one finalize)."""
        while (shard := next_shard()) is not None:
            self._guarded(f"shard {shard}", worker, partial(self._drain_shard, shard, worker))
        return worker

    def _guarded(self, what: str, worker: _Worker, step: Callable[[], None]) -> None:
        """Run one step; an AWS error stops only it (what it left waits for the next run)."""
        try:
            step()
        except _AWS_ERRORS as exc:
            worker.summary.drained = False
            worker.fault(f"{what}: {_describe(exc)}")
            logger.warning("relay step stopped", step=what, error=_describe(exc))

    # -- one shard: its lease ----------------------------------------------------------------------

    def _drain_shard(self, name: str, worker: _Worker) -> None:
        """Acquire the shard's lease, drain the shard, release it; then read the shard once more: an entry
        written while this relay held the lease (its doorbell's acquire was refused) and not seen yet makes
        it acquire again (no lost wake-up, ADR 0018). Bounded by the run's deadline."""
        seen: set[str] = set()
        while not self._out_of_time(worker):
            lease = self._acquire(name, worker)
            if lease is None and worker.wait_for_busy:
                lease = self._wait_for(name, worker)
            if lease is None:
                worker.summary.shards_busy += 1
                if worker.wait_for_busy:
                    worker.summary.drained = False  # a full pass was asked for, and this shard was not in it
                return
            shard = _Shard(name, lease, seen)
            try:
                self._drain_under_lease(shard, worker)
            except _AWS_ERRORS:
                self._release(shard, worker)  # whatever was sent under it is finalized or settled
                raise
            if shard.keep or not self._release(shard, worker) or self._out_of_time(worker):
                return
            now_ms = epoch_millis(self._clock.now())
            if not self.store.holds_unseen_due(name, seen, now_ms=now_ms, limit=self._config.page_size):
                return

    def _acquire(self, shard: str, worker: _Worker) -> ShardLease | None:
        """The shard's lease for a new holder token, or None: another relay holds it. A try resent after a
        transient error keeps the token, so an acquire applied before its response was lost is ours."""
        holder = str(uuid.uuid4())
        return self._retried(
            worker,
            lambda: self.leases.acquire(shard, holder=holder, now_ms=epoch_millis(self._clock.now())),
            budget_seconds=worker.deadline - self._clock.monotonic(),
        )

    def _wait_for(self, shard: str, worker: _Worker) -> ShardLease | None:
        """Try a busy shard's lease again every `BUSY_SHARD_POLL_SECONDS` for up to one lease: its holder
        releases it when the shard is drained, or dies and the lease runs out (then ours takes it over,
        with the watermark). None when it is still held then, or the run's deadline came first."""
        until = min(
            self._clock.monotonic() + self._settings.lease_seconds + BUSY_SHARD_POLL_SECONDS,
            worker.deadline - self._config.batch_margin_seconds,
        )
        while self._clock.monotonic() + BUSY_SHARD_POLL_SECONDS <= until:
            self._sleep(BUSY_SHARD_POLL_SECONDS)
            lease = self._acquire(shard, worker)
            if lease is not None:
                return lease
        return None

    def _release(self, shard: _Shard, worker: _Worker) -> bool:
        """Give the lease up unless a write under it failed (`keep`). False when there was nothing to give
        up (taken over meanwhile) or the release itself failed (it expires then)."""
        if shard.keep:
            return False
        try:
            return self._retried(
                worker,
                lambda: self.leases.release(shard.lease),
                budget_seconds=self._lease_seconds_left(shard),
            )
        except _AWS_ERRORS as exc:
            worker.fault(f"shard {shard.name}: lease not released: {_describe(exc)}")
            return False

    def _lease_seconds_left(self, shard: _Shard) -> float:
        return (shard.lease.lease_until_ms - epoch_millis(self._clock.now())) / 1000 - 1.0

    def _retried(self, worker: _Worker, call: Callable[[], _T], *, budget_seconds: float) -> _T:
        """`call` again on a transient AWS error (never on `LeaseLost`: a refusal is an answer)."""
        retrying = self._retry.retrying(
            budget_seconds=budget_seconds, retry_on=_AWS_ERRORS, before_retry=worker.count_retry
        )
        result: _T = retrying(call)
        return result

    def _lost(self, shard: _Shard, worker: _Worker, what: str) -> None:
        """The lease is no longer ours (or may not be): stop the shard and leave the lease to expire."""
        shard.keep = True
        worker.summary.leases_lost += 1
        worker.summary.drained = False
        worker.summary.errors.append(f"shard {shard.name}: lease lost ({what})")
        logger.warning("shard lease lost", shard=shard.name, during=what)

    # -- one shard: its entries --------------------------------------------------------------------

    def _drain_under_lease(self, shard: _Shard, worker: _Worker) -> None:
        """Page through the shard oldest first and send what is due, batch by batch. Returns when the
        shard is drained, the run's time is up, or the lease is lost (`shard.keep`)."""
        start_key: dict[str, Any] | None = None
        pending: list[Entry] = []
        first_page = True
        while True:
            if self._out_of_time(worker):
                return
            page, start_key = self.store.query_page(shard.name, start_key, limit=self._config.page_size)
            shard.seen.update(entry.entry_id for entry in page)
            now_ms = epoch_millis(self._clock.now())
            if first_page:
                worker.summary.oldest_pending_age_seconds = max(
                    worker.summary.oldest_pending_age_seconds, _oldest_age(page, now_ms)
                )
                first_page = False
            admission = self._gate.admit(page, now_ms=now_ms, blocked=worker.blocked)
            pending.extend(admission.entries)
            worker.blocked |= admission.blocks
            last_page = start_key is None
            while pending and (len(pending) >= self._config.batch_size or last_page):
                size = self._config.batch_size
                chunk, pending[:] = pending[:size], pending[size:]
                if not self._take_batch(chunk, shard, worker):
                    return
            if last_page:
                return

    def _out_of_time(self, worker: _Worker) -> bool:
        """Too close to the deadline for another page or batch: what is left waits for the next run (none
        of it was written), and the outbox was not drained."""
        if worker.deadline - self._clock.monotonic() >= self._config.batch_margin_seconds:
            return False
        worker.summary.drained = False
        return True

    def _take_batch(self, chunk: list[Entry], shard: _Shard, worker: _Worker) -> bool:
        """Process one batch of the shard; False when the shard must stop (deadline, lease lost)."""
        if self._out_of_time(worker):
            return False
        batch = [entry for entry in chunk if not self._gate.holds_back(entry, worker.blocked)]
        if not batch:
            return True
        try:
            return self._process_batch(batch, shard, worker)
        except BaseException:
            # The batch stopped part way: its groups' later entries must wait for the next run.
            worker.blocked |= self._gate.blocked_groups(batch)
            raise

    # -- one batch ---------------------------------------------------------------------------------

    def _process_batch(self, batch: list[Entry], shard: _Shard, worker: _Worker) -> bool:
        """Renew the lease with the batch's watermark, load, send, finalize what SQS accepted, and settle
        the rest. False when the shard must stop (the lease lost, or a write under it undecided)."""
        window = self._renew(shard, batch[-1].entry_id, worker)
        if window is None:
            return False
        outgoing = self._load(batch, shard, window, worker)
        if outgoing is None:
            return False
        results = self._send(outgoing, shard, window, worker)
        accepted = [result for result in results if result.outcome is Outcome.ACCEPTED]
        unsent = [result for result in results if result.outcome is not Outcome.ACCEPTED]
        worker.blocked |= self._gate.blocked_groups(result.outgoing.entry for result in unsent)
        finalized = self._finalize(accepted, shard, window, worker)
        if finalized:
            for result in unsent:
                if not self._settle_unsent(result, shard, window, worker):
                    break
        worker.summary.batches += 1
        worker.summary.batch_seconds_total += self._clock.monotonic() - window.started
        return finalized and not shard.keep

    def _renew(self, shard: _Shard, sending_upto: str, worker: _Worker) -> _Window | None:
        """Extend the lease and record the batch's watermark before its first send; None (nothing of the
        batch may be sent) when the lease is no longer ours. The send window is measured from before the
        renew was sent, so it never outlasts the lease DynamoDB holds."""
        started = self._clock.monotonic()
        renewed_at_ms = epoch_millis(self._clock.now())
        try:
            shard.lease = self._retried(
                worker,
                lambda: self.leases.renew(shard.lease, now_ms=renewed_at_ms, sending_upto=sending_upto),
                budget_seconds=self._lease_seconds_left(shard),
            )
        except LeaseLost:
            self._lost(shard, worker, "renew refused")
            return None
        return _Window(
            clock=self._clock,
            renewed_at_ms=renewed_at_ms,
            started=started,
            deadline=worker.deadline,
            lease_deadline=started + self._settings.lease_seconds,
            send_margin_seconds=self._config.send_margin_seconds,
        )

    def _load(
        self, entries: Sequence[Entry], shard: _Shard, window: _Window, worker: _Worker
    ) -> list[Outgoing] | None:
        """Payloads for the batch. A message already moved on (or gone) takes its entry with it, in one
        transaction behind the lease's check; None when that check failed (the lease is lost). A payload in
        S3 goes as a pointer to its object, checked to be there first (`OutboxStore.payload_object`); one
        that is missing, like a payload missing from the Payloads table, parks its message."""
        messages = self.store.fetch_messages(
            [entry.message_id for entry in entries], seconds_left=window.seconds_left
        )
        outgoing: list[Outgoing] = []
        dropped: list[Entry] = []
        no_payload: list[tuple[Entry, str]] = []
        for entry in entries:
            item = messages.get(entry.message_id)
            if item is None:
                worker.fault(f"message {entry.message_id} missing: entry removed")
                logger.error("message missing for outbox entry", message_id=entry.message_id)
                dropped.append(entry)
            elif item["status"]["S"] != Status.PENDING:
                worker.summary.stale += 1
                dropped.append(entry)
            elif "payload" in item:
                outgoing.append(_outgoing(entry, item))
            else:
                try:
                    obj = self.store.payload_object(item)
                except PayloadUnavailable as unavailable:
                    no_payload.append((entry, str(unavailable)))
                    continue
                if obj is None:
                    no_payload.append((entry, self.store.payload_problem(item)))
                else:
                    outgoing.append(_outgoing(entry, item, obj))
        if not self._delete_entries(dropped, shard, window, worker):
            return None
        for entry, problem in no_payload:
            if not self._park_without_payload(entry, problem, shard, window, worker):
                return None
        return self._behind_parked(outgoing, [entry for entry, _ in no_payload], worker)

    def _behind_parked(
        self, outgoing: list[Outgoing], parked: list[Entry], worker: _Worker
    ) -> list[Outgoing]:
        """A FIFO group with an entry parked in this batch is closed for the run: its later entries are
        held back, as behind any parked entry (ADR 0008)."""
        closed = self._gate.blocked_groups(parked)
        if not closed:
            return outgoing
        worker.blocked |= closed
        first_parked: dict[str | None, str] = {}
        for entry in parked:
            first_parked.setdefault(entry.group_id, entry.entry_id)
        kept: list[Outgoing] = []
        for one in outgoing:
            if one.entry.group_id in closed and one.entry.entry_id > first_parked[one.entry.group_id]:
                worker.summary.held_back += 1
            else:
                kept.append(one)
        return kept

    def _park_without_payload(
        self, entry: Entry, problem: str, shard: _Shard, window: _Window, worker: _Worker
    ) -> bool:
        """A message whose payload stored apart is not there (ADR 0023) is never sent empty: it is parked
        as FAILED saying why (the poison pair of ADR 0007, no attempt counted), for an operator. False when
        the lease was lost or the write's outcome is unknown (the shard stops)."""
        worker.fault(f"message {entry.message_id}: {problem}")
        logger.error("payload missing: message parked", message_id=entry.message_id, error=problem)
        settlement = Settlement(
            Settle.POISON, attempts=entry.attempts, counted=False, error=problem, maybe_sent=False
        )
        try:
            self._poison(entry, settlement, sent_at_ms=None, shard=shard, window=window, worker=worker)
        except LeaseLost:
            self._lost(shard, worker, f"parking of {entry.message_id} refused")
            return False
        except _AWS_ERRORS as exc:
            worker.fault(f"could not park {entry.message_id}: {_describe(exc)}")
            shard.keep = True
            return False
        return True

    def _delete_entries(self, entries: list[Entry], shard: _Shard, window: _Window, worker: _Worker) -> bool:
        """Delete entries whose message moved on or is gone, fenced by the lease; False if it was lost."""
        if not entries:
            return True
        try:
            self._retried(
                worker,
                lambda: self.store.delete_entries(entries, check=self.leases.check_action(shard.lease)),
                budget_seconds=window.seconds_left(),
            )
        except LeaseLost:
            self._lost(shard, worker, "entry delete refused")
            return False
        return True

    def _send(
        self, outgoing: list[Outgoing], shard: _Shard, window: _Window, worker: _Worker
    ) -> list[SendResult]:
        results, stats = self._sender.send(outgoing, deadline=window.send_window)
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
                self._note_resend(result.outgoing.entry, shard, now_ms, worker)
        return results

    def _note_resend(self, entry: Entry, shard: _Shard, now_ms: int, worker: _Worker) -> None:
        """Count a send (or maybe a send) that an earlier relay may already have made: the entry's own
        stamp, or the watermark of a lease taken over (`first_send_time`, `judge_resend`)."""
        first_send_at = first_send_time(entry, shard.lease.taken_over)
        resend = judge_resend(first_send_at, now_ms=now_ms, fifo=self._settings.fifo)
        if resend.duplicate_possible:
            worker.summary.duplicates_possible += 1
        if resend.after_window:
            worker.summary.resent_after_window += 1
            logger.warning(
                "FIFO resend after the deduplication margin: SQS may deliver it twice",
                message_id=entry.message_id,
                late_by_seconds=round(resend.late_by_ms / 1000, 1),
            )

    def _finalize(self, accepted: list[SendResult], shard: _Shard, window: _Window, worker: _Worker) -> bool:
        """Mark the accepted messages QUEUED and delete their entries behind the lease's check; the
        undecided ones of a cancelled transaction are finalized again, as a failed call is. False (stop
        the shard, keep the lease's watermark) when the lease was lost or the outcome stayed unknown."""
        pending = [(result.outgoing.entry, result.sqs_message_id or "") for result in accepted]
        if not pending:
            return True

        def attempt() -> list[tuple[Entry, str]]:
            nonlocal pending
            check = self.leases.check_action(shard.lease)
            outcome = self.store.finalize(pending, check=check, now=self._clock.now())
            if outcome.lease_lost:
                raise LeaseLost(f"shard {shard.name}: finalize refused by the lease's check")
            retry_ids = {entry.entry_id for entry in outcome.retry}
            pending = [pair for pair in pending if pair[0].entry_id in retry_ids]
            self._record_finalize(outcome, shard, worker)
            return pending

        retrying = self._retry.retrying(
            budget_seconds=window.seconds_left(),
            retry_on=_AWS_ERRORS,
            retry_while=bool,
            before_retry=worker.count_retry,
        )
        try:
            retrying(attempt)
        except LeaseLost:
            self._finalize_failed(pending, "the shard's lease was lost", worker)
            self._lost(shard, worker, "finalize refused")
            return False
        except _AWS_ERRORS as exc:
            self._finalize_failed(pending, _describe(exc), worker)
            shard.keep = True
            return False
        if pending:
            self._finalize_failed(pending, "still undecided when the retries ran out", worker)
            shard.keep = True
            return False
        return True

    def _finalize_failed(self, pending: list[tuple[Entry, str]], reason: str, worker: _Worker) -> None:
        """Sent but not finalized: the lease expires with its watermark, and the next holder resends with
        the same message_id, counting the resends (ADR 0009, ADR 0018)."""
        worker.summary.finalize_failed += len(pending)
        worker.summary.drained = False
        worker.summary.errors.append(f"finalize failed for {len(pending)} message(s): {reason}")
        logger.warning(
            "finalize failed; entries will be resent by the lease's next holder",
            message_ids=[entry.message_id for entry, _ in pending],
            error=reason,
        )

    def _record_finalize(self, outcome: FinalizeResult, shard: _Shard, worker: _Worker) -> None:
        worker.summary.sent += len(outcome.done) + len(outcome.already_moved)
        for entry in outcome.missing:
            worker.fault(f"message {entry.message_id} missing at finalize: entry removed")
            logger.error("message missing at finalize", message_id=entry.message_id)
        self.store.delete_entries(
            [*outcome.already_moved, *outcome.missing], check=self.leases.check_action(shard.lease)
        )

    # -- what was not sent -------------------------------------------------------------------------

    def _settle_unsent(self, result: SendResult, shard: _Shard, window: _Window, worker: _Worker) -> bool:
        """Carry out `settle_unsent`'s decision for an entry whose send was not accepted. False (stop the
        shard, keep the lease's watermark) when the lease was lost or the write's outcome is unknown."""
        entry = result.outgoing.entry
        settlement = settle_unsent(result, max_attempts=self._settings.max_attempts)
        if settlement.action is Settle.HOLD:
            worker.summary.held_back += 1  # nothing to write: the entry stays READY for the next pass
            return True
        sent_at_ms = window.renewed_at_ms if settlement.maybe_sent else None
        try:
            if settlement.action is Settle.POISON:
                self._poison(
                    entry, settlement, sent_at_ms=sent_at_ms, shard=shard, window=window, worker=worker
                )
            else:
                self._roll_back(
                    result, settlement, sent_at_ms=sent_at_ms, shard=shard, window=window, worker=worker
                )
        except LeaseLost:
            self._lost(shard, worker, f"settlement of {entry.message_id} refused")
            return False
        except _AWS_ERRORS as exc:  # its outcome unknown: the watermark stays, the next holder counts it
            worker.fault(f"could not settle {entry.message_id}: {_describe(exc)}")
            shard.keep = True
            return False
        return True

    def _poison(
        self,
        entry: Entry,
        settlement: Settlement,
        *,
        sent_at_ms: int | None,
        shard: _Shard,
        window: _Window,
        worker: _Worker,
    ) -> None:
        poisoned = self._retried(
            worker,
            lambda: self.store.poison(
                entry,
                check=self.leases.check_action(shard.lease),
                attempts=settlement.attempts,
                error=settlement.error,
                now=self._clock.now(),
                sent_at_ms=sent_at_ms,
            ),
            budget_seconds=window.seconds_left(),
        )
        if poisoned:
            worker.summary.poisoned += 1
            logger.warning(
                "message poisoned",
                message_id=entry.message_id,
                error=settlement.error,
                attempts=settlement.attempts,
            )

    def _roll_back(
        self,
        result: SendResult,
        settlement: Settlement,
        *,
        sent_at_ms: int | None,
        shard: _Shard,
        window: _Window,
        worker: _Worker,
    ) -> None:
        entry = result.outgoing.entry
        jitter = self._rng.random()
        next_attempt_at_ms = retry_at_ms(
            epoch_millis(self._clock.now()),
            settlement.attempts,
            cap_seconds=self._settings.max_backoff_seconds,
            jitter=jitter,
        )
        rolled_back = self._retried(
            worker,
            lambda: self.store.roll_back(
                entry,
                check=self.leases.check_action(shard.lease),
                counted=settlement.counted,
                next_attempt_at_ms=next_attempt_at_ms,
                error=settlement.error,
                sent_at_ms=sent_at_ms,
            ),
            budget_seconds=window.seconds_left(),
        )
        if rolled_back:
            worker.summary.rolled_back += 1
            worker.summary.errors.append(f"send of {entry.message_id} rolled back: {settlement.error}")
            logger.info(
                "send rolled back",
                message_id=entry.message_id,
                outcome=result.outcome.value,
                attempts=settlement.attempts,
                error=settlement.error,
            )


def _outgoing(entry: Entry, item: dict[str, Any], obj: PayloadObject | None = None) -> Outgoing:
    """The message as it goes to SQS: its payload and attributes as stored at ingest; for a payload in S3
    (`obj`), the AWS SQS Extended Client's pointer to it and its `ExtendedPayloadSize` attribute instead of
    the payload (ADR 0023)."""
    attributes = {name: value["S"] for name, value in item.get("attributes", {}).get("M", {}).items()}
    group_id = item["group_id"]["S"] if "group_id" in item else None
    trace_header = item["trace_header"]["S"] if "trace_header" in item else None
    if obj is not None:
        return Outgoing(entry, pointer_body(obj), attributes, group_id, trace_header, pointer_attributes(obj))
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

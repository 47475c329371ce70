"""The invariant checker: reads the tables and the queue directly, never through the code under test."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from chaos.consumers import ConsumerLog
from outbox.core.settings import Settings
from outbox.local.demo_consumer import applied_counts
from outbox.local.queue import drain_queue, message_id_of
from outbox.provisioning import Resources
from outbox.testing.faults import SQS_DEDUPLICATION_SECONDS
from relay.leases import is_lease_partition

ALLOWED_MOVES = {("PENDING", "QUEUED"), ("PENDING", "FAILED")}
"""Forward moves; FAILED→PENDING (and FAILED→QUEUED, its requeue seen between samples) only for a
message the drain requeued: that is the one audited backwards move (docs/design.md §2)."""
REQUEUE_MOVES = {("FAILED", "PENDING"), ("FAILED", "QUEUED")}
CONSUMER_MOVES = {
    ("QUEUED", "PROCESSING"),
    ("PROCESSING", "COMPLETED"),
    ("PROCESSING", "QUEUED"),  # the helper gives a failed run back (ADR 0019), `last_error` kept
    # A sample between two of them sees a later one directly.
    ("QUEUED", "COMPLETED"),
    ("PENDING", "PROCESSING"),
    ("PENDING", "COMPLETED"),
}
"""With consumers (issue #16): the consumer side's moves, all conditional writes of the helper."""
REQUEUED_CONSUMER_MOVES = {("FAILED", "PROCESSING"), ("FAILED", "COMPLETED")}
REDRIVE_MOVES = {(before, "DEAD_LETTERED") for before in ("PENDING", "QUEUED", "PROCESSING")} | {
    ("DEAD_LETTERED", after) for after in ("PENDING", "QUEUED", "PROCESSING", "COMPLETED")
}
"""Marked DEAD_LETTERED and redriven through the outbox by the drain (ADR 0020): the other audited way
back, allowed only for the messages the drain redrove."""


@dataclass(frozen=True)
class Accepted:
    """A message as its client saw it accepted (202 or a 200 replay)."""

    message_id: str
    index: int
    key: str
    group: str | None
    payload: dict[str, Any]
    at: float


@dataclass(frozen=True)
class ConsumerSide:
    """What the checker reads of the consumers: their log and their effects table (chaos/consumers.py)."""

    log: ConsumerLog
    effects_table: str


@dataclass
class Figures:
    scenario: dict[str, Any] = field(default_factory=dict)
    accepted: int = 0
    queued: int = 0
    received: int = 0
    unique_received: int = 0
    lost: int = 0
    lost_ids: list[str] = field(default_factory=list)
    wrong_payload: int = 0
    payloads_apart: int = 0
    """Accepted messages whose payload is stored apart (ADR 0023): their payload reached the queue whole
    (`wrong_payload` counts any that did not), read from the Payloads table."""
    duplicates: int = 0
    duplicated_messages: int = 0
    duplicates_unexplained: int = 0
    duplicates_requeued: int = 0
    """Extra copies of messages the drain requeued (an operator's requeue of a FAILED message)."""
    duplicates_outside_dedup_window: int = 0
    """Extra copies sent more than SQS's 5-minute deduplication window after the first (FIFO: the one
    duplicate window of docs/design.md §4.8)."""
    regressions: int = 0
    regression_samples: list[str] = field(default_factory=list)
    vanished: int = 0
    stuck_entries: int = 0
    order_violations: int = 0
    order_violation_samples: list[str] = field(default_factory=list)
    """Up to 20 `group: #a received before #b` (accept indexes; b was accepted first), to find the runs."""
    unexpected_messages: int = 0
    status_samples: int = 0
    status_scans: int = 0
    requeued: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)
    """Messages the consumer drain found in the dead-letter queue: marked DEAD_LETTERED, then redriven
    through the outbox or found completed meanwhile."""
    drain_runs: int = 0
    drain_sent: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    faults_by_operation: dict[str, int] = field(default_factory=dict)
    faults_total: int = 0
    late_fifo_resends: int = 0
    """FIFO resends more than 4 minutes after the first claim, as the chaos-phase relays counted them
    (`FifoResendsAfterWindow`; killed relay processes do not report theirs)."""
    entry_faults_spared: int = 0
    """FIFO: entry faults not injected because SQS would have accepted the resend (a repeated
    deduplication id within 5 minutes of its first accepted send)."""
    faulted_client_calls: int = 0
    fault_share_of_calls: float = 0.0
    simulated_kills: int = 0
    kills_by_moment: dict[str, int] = field(default_factory=dict)
    sigkills: int = 0
    max_concurrent_relays: int = 0
    relay_runs: int = 0
    """In-process sweeps (every shard per run), chaos phase."""
    sweep_sent: int = 0
    """Messages the in-process sweeps sent (their finished runs; a killed run reports nothing)."""
    process_relay_runs: int = 0
    process_relay_sent: int = 0
    doorbell_runs: int = 0
    """In-process runs rung by the stream (`relay_rung` over the shards a batch named)."""
    doorbell_sent: int = 0
    doorbell_kills: int = 0
    """Simulated kills (of `simulated_kills`) that hit a doorbell run."""
    doorbell_summary: dict[str, Any] = field(default_factory=dict)
    doorbell_runs_sharing_a_shard: int = 0
    """Doorbell runs that started while another doorbell run was working a shard they were rung for."""
    doorbell_runs_beside_a_sweep: int = 0
    """Doorbell runs that started while a sweep (in-process or a relay process) was running."""
    max_doorbell_runs_on_a_shard: int = 0
    """Most doorbell runs running at one moment that were rung for the same shard (runs overlapping in
    time: whether they read the shard in the same instant is not measured)."""
    stream: dict[str, int] = field(default_factory=dict)
    """What the doorbell's stream feed read, did to the records and delivered (chaos/doorbell.py)."""
    ingest_retries: int = 0
    ingest_replays: int = 0
    ingest_abandoned: int = 0
    ingest_bugs: list[str] = field(default_factory=list)
    relay_summary: dict[str, Any] = field(default_factory=dict)
    chaos_seconds: float = 0.0
    ingest_seconds: float = 0.0
    seconds: float = 0.0
    consumers: int = 0
    completed: int = 0
    """With consumers: accepted messages COMPLETED at the end (must be all of them)."""
    effects_applied_once: int = 0
    effects_missing: int = 0
    """Accepted messages whose side effect was never applied."""
    effects_applied_more_than_once: int = 0
    """Accepted messages whose side effect was applied twice or more: what the helper must prevent."""
    stuck_processing: int = 0
    """Messages PROCESSING after the drain."""
    dead_lettered: int = 0
    """Messages in the dead-letter queue at the end."""
    consumer_receives: int = 0
    consumer_outcomes: dict[str, int] = field(default_factory=dict)
    consumer_drain_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        fifo_ok = not self.scenario.get("fifo") or (self.duplicates == 0 and self.order_violations == 0)
        consumers_ok = not self.consumers or (
            self.completed == self.accepted
            and self.effects_applied_once == self.accepted
            and self.effects_missing == 0
            and self.effects_applied_more_than_once == 0
            and self.stuck_processing == 0
            and self.dead_lettered == 0
        )
        return (
            self.accepted > 0
            and self.lost == 0
            and self.wrong_payload == 0
            and self.stuck_entries == 0
            and self.regressions == 0
            and self.vanished == 0
            and self.duplicates_unexplained == 0
            and not self.ingest_bugs
            and self.queued == self.accepted
            and fifo_ok
            and consumers_ok
        )

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["requeued"] = len(self.requeued)
        data["ok"] = self.ok
        return data


class StatusSampler:
    """Scans the Messages table over and over from its own unfaulted client, remembering each message's
    last status: a move that is not forward is a regression; a message that disappears has vanished.

    A scan of the whole table grows with it and the emulator answers one request at a time, so the sampler
    rests at least twice as long as its last scan took: it never takes more than a third of the server,
    whatever the table's size (at 5,000 messages, scanning back to back slowed ingest and relays alike)."""

    REST_PER_SCAN_SECOND = 2.0

    def __init__(self, dynamodb: Any, table: str, *, interval: float = 0.25) -> None:
        self.interval = interval
        self._client = dynamodb
        self._table = table
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-sampler", daemon=True)
        self.last: dict[str, str] = {}
        self.moves: list[tuple[str, str, str]] = []
        self.vanished: set[str] = set()
        self.samples = 0
        self.scans = 0
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.scan()  # one last look after the drain

    def _loop(self) -> None:
        rest = self.interval
        while not self._stop.wait(rest):
            started = time.monotonic()
            try:
                self.scan()
            except Exception:
                self.errors += 1
            rest = max(self.interval, self.REST_PER_SCAN_SECOND * (time.monotonic() - started))

    def scan(self) -> None:
        seen = read_statuses(self._client, self._table)
        self.scans += 1
        for message_id, status in seen.items():
            self.samples += 1
            before = self.last.get(message_id)
            if before is not None and before != status:
                self.moves.append((message_id, before, status))
            self.last[message_id] = status
        self.vanished |= set(self.last) - set(seen)


def read_statuses(dynamodb: Any, table: str) -> dict[str, str]:
    """Every message's status, read consistently (only the two attributes): message id → status."""
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ConsistentRead=True,
        ProjectionExpression="message_id, #status",
        ExpressionAttributeNames={"#status": "status"},
    )
    return {item["message_id"]["S"]: item["status"]["S"] for page in pages for item in page["Items"]}


def check(
    figures: Figures,
    accepted: list[Accepted],
    *,
    sampler: StatusSampler,
    dynamodb: Any,
    sqs: Any,
    resources: Resources,
    settings: Settings,
    fifo: bool,
    consumers: ConsumerSide | None = None,
) -> None:
    """The invariants, read from the tables and the queue. With `consumers`, a message is delivered when it
    is COMPLETED, what the relay sent is what the consumers received (one SQS message id per send, however
    often SQS redelivered it) plus what is left in the queue, and the effects table must hold exactly one
    application per accepted message."""
    by_id = {message.message_id: message for message in accepted}
    figures.accepted = len(by_id)
    items = _scan(dynamodb, resources.messages_table)
    statuses = {item["message_id"]["S"]: item["status"]["S"] for item in items}
    delivered = "COMPLETED" if consumers else "QUEUED"
    figures.payloads_apart = sum(
        1 for item in items if "payload_ref" in item and item["message_id"]["S"] in by_id
    )
    figures.queued = sum(1 for message_id in by_id if statuses.get(message_id) == delivered)
    figures.stuck_entries = sum(  # the shard leases share the table: not entries
        1 for item in _scan(dynamodb, resources.outbox_table) if not is_lease_partition(item["shard"]["S"])
    )

    received = drain_queue(sqs, resources.queue_url)
    if consumers is not None:
        _check_consumers(figures, consumers, by_id, statuses, dynamodb=dynamodb, sqs=sqs, resources=resources)
        with consumers.log.lock:
            received = [*consumers.log.first_receipts.values(), *received]
    figures.received = len(received)
    copies = Counter(message_id_of(message) for message in received)
    figures.unique_received = len(copies)
    figures.duplicates = figures.received - figures.unique_received
    figures.duplicated_messages = sum(1 for count in copies.values() if count > 1)
    figures.unexpected_messages = len(set(copies) - set(statuses))
    missing = sorted(message_id for message_id in by_id if copies[message_id] == 0)
    not_queued = sorted(message_id for message_id in by_id if statuses.get(message_id) != delivered)
    figures.lost_ids = sorted(set(missing) | set(not_queued))[:20]
    figures.lost = len(set(missing) | set(not_queued))

    for message in received:
        original = by_id.get(message_id_of(message))
        if original is None:
            continue
        attributes = message.get("MessageAttributes", {})
        if json.loads(message["Body"]) != original.payload or attributes.get("n", {}).get(
            "StringValue"
        ) != str(original.index):
            figures.wrong_payload += 1

    requeued = set(figures.requeued)
    allowed = ALLOWED_MOVES | (CONSUMER_MOVES if consumers else set())
    after_requeue = REQUEUE_MOVES | (REQUEUED_CONSUMER_MOVES if consumers else set())
    redriven = set(figures.redriven)
    regressions = [
        f"{message_id}: {before}→{after}"
        for message_id, before, after in sampler.moves
        if (before, after) not in allowed
        and not ((before, after) in after_requeue and message_id in requeued)
        and not ((before, after) in REDRIVE_MOVES and message_id in redriven)
    ]
    figures.regressions = len(regressions)
    figures.regression_samples = regressions[:20]
    figures.vanished = len(sampler.vanished)
    figures.status_samples = sampler.samples
    figures.status_scans = sampler.scans

    if fifo and consumers is None:  # with consumers, receipts interleave across lanes and redeliveries
        violations = order_violations_in(received, accepted)
        figures.order_violations = len(violations)
        figures.order_violation_samples = violations[:20]
    _classify_duplicates(figures, received)
    # Standard queue: a duplicate needs a send whose outcome the relay could not know (a lost response, a
    # 5xx after SQS applied it) or a relay that died between send and finalize. With no such cause in the
    # run, any duplicate is unexplained.
    causes = (
        figures.faults.get("lost_response", 0)
        + figures.faults.get("server_error", 0)
        + figures.simulated_kills
        + figures.sigkills
    )
    if figures.duplicates and not causes:
        figures.duplicates_unexplained = figures.duplicates


def _check_consumers(
    figures: Figures,
    consumers: ConsumerSide,
    by_id: dict[str, Accepted],
    statuses: dict[str, str],
    *,
    dynamodb: Any,
    sqs: Any,
    resources: Resources,
) -> None:
    """The consumer side's invariants: every accepted message's side effect applied exactly once, none left
    PROCESSING, none in the dead-letter queue."""
    figures.consumers = int(figures.scenario.get("consumers", 0))
    figures.completed = figures.queued
    applied = applied_counts(dynamodb, consumers.effects_table)
    figures.effects_applied_once = sum(1 for message_id in by_id if applied.get(message_id) == 1)
    figures.effects_missing = sum(1 for message_id in by_id if applied.get(message_id, 0) == 0)
    figures.effects_applied_more_than_once = sum(1 for count in applied.values() if count > 1)
    figures.stuck_processing = sum(1 for status in statuses.values() if status == "PROCESSING")
    dead = sqs.get_queue_attributes(
        QueueUrl=resources.dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    figures.dead_lettered = int(dead["ApproximateNumberOfMessages"]) + int(
        dead["ApproximateNumberOfMessagesNotVisible"]
    )
    with consumers.log.lock:
        figures.consumer_receives = consumers.log.receives
        figures.consumer_outcomes = dict(sorted(consumers.log.outcomes.items()))


def _classify_duplicates(figures: Figures, received: list[dict[str, Any]]) -> None:
    """Why each extra copy exists, as far as the queue shows it: a requeued message, or a copy sent more
    than 5 minutes after the first (beyond SQS FIFO deduplication)."""
    sent_at: dict[str, list[int]] = defaultdict(list)
    for sqs_message in received:
        sent_at[message_id_of(sqs_message)].append(int(sqs_message["Attributes"].get("SentTimestamp", 0)))
    requeued = set(figures.requeued) | set(figures.redriven)  # both send a message again, on purpose
    for message_id, times in sent_at.items():
        extra = len(times) - 1
        if extra <= 0:
            continue
        if message_id in requeued:
            figures.duplicates_requeued += extra
        elif max(times) - min(times) > SQS_DEDUPLICATION_SECONDS * 1000:
            figures.duplicates_outside_dedup_window += extra


def order_violations_in(received: list[dict[str, Any]], accepted: list[Accepted]) -> list[str]:
    """Per group, the first copies in receive order must follow the accept order (each group belongs to one
    client, which waits for each answer before the next request: docs/design.md §4.7). One line per pair of
    consecutive first copies received out of order."""
    index_of: dict[str, dict[str, int]] = defaultdict(dict)
    for message in accepted:
        if message.group is not None:
            index_of[message.group][message.message_id] = message.index
    actual: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for sqs_message in received:
        message_id = message_id_of(sqs_message)
        group = sqs_message.get("Attributes", {}).get("MessageGroupId", "")
        if message_id in seen:
            continue
        seen.add(message_id)
        actual[group].append(message_id)
    violations: list[str] = []
    for group, indexes in index_of.items():
        got = [indexes[message_id] for message_id in actual.get(group, []) if message_id in indexes]
        violations.extend(
            f"{group}: #{first} received before #{second}"  # accept indexes, in the order received
            for first, second in itertools.pairwise(got)
            if second < first
        )
    return violations


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    paginator = dynamodb.get_paginator("scan")
    return [
        item for page in paginator.paginate(TableName=table, ConsistentRead=True) for item in page["Items"]
    ]

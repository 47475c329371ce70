"""The chaos scenario: concurrent ingest clients, relays with faults and kills, a clean drain, a check.

Phases (ADR 0013):
1. chaos: `clients` ingest threads accept `messages` messages through `outbox.enqueue` (retrying with the
   same Idempotency-Key after any failure, as an HTTP client does after a 5xx or a timeout), while
   `relays` in-process relays (faults on their clients, crashed `kills` times by a `KillSwitch`) and
   `process_relays` `outbox relay --once` subprocesses (killed `sigkills` times with a real SIGKILL) run
   at once: these are the sweep, every shard per run. Beside them, `doorbell_relays` in-process relays
   (the same faults and kill switches) are rung by the Outbox table's stream, read from the emulator and
   dropped, duplicated, delayed and reordered on the way (chaos/doorbell.py, ADR 0017): two doorbell runs
   and a sweep can work one shard at once. A separate, unfaulted client samples every message's status
   throughout.
   With `consumers` > 0, that many consumer lanes (chaos/consumers.py, issue #16) read the queue through
   the consumer helper at the same time, crashing between claim and completion, timing out, failing and
   losing deletes, and commit a side effect in an effects table of their own with each completion.
2. drain: faults off, FAILED messages requeued (the one audited backwards move), one clean relay whose
   clock is past every lease and backoff runs until the outbox is empty; with consumers, they then run
   until every accepted message is COMPLETED (or the budget is spent).
3. check: `chaos.checker` reads the tables and the whole queue directly (with consumers, what they
   received, the effects table and what is left in the queue and its dead-letter queue).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.session

from chaos.checker import Accepted, ConsumerSide, Figures, StatusSampler, check, read_statuses
from chaos.consumers import ChaosConsumer, ConsumerFaults, ConsumerLog
from chaos.doorbell import Perturbation, StreamFeed
from chaos.kills import (
    CONSUMER_DYNAMODB_FAULTS,
    INGEST_DYNAMODB_FAULTS,
    RELAY_CONFIG,
    RELAY_DYNAMODB_FAULTS,
    RELAY_RETRIES,
    RELAY_SQS_FAULTS,
    KillSwitch,
    fault_counts,
    install_faults,
)
from chaos.ledger import DedupLedger
from outbox.api import enqueue
from outbox.core.clients import CLIENT_CONFIG
from outbox.core.errors import InvalidRequest
from outbox.core.settings import Settings
from outbox.local.demo_consumer import shipments_table_definition
from outbox.local.emulator import DUMMY_CREDENTIALS, EmbeddedAws
from outbox.local.stream import StreamTail
from outbox.ops import admin, dlq
from outbox.provisioning import Resources, provision
from outbox.testing.calls import CallCounter
from outbox.testing.faults import Crash, FaultInjector
from relay.core import Relay
from relay.doorbell import shards_rung
from relay.entries import RunSummary
from relay.handler import relay_rung
from relay.leases import entries_only

SCENARIO_SETTINGS = {
    "MAX_BACKOFF_SECONDS": "1",
    "LEASE_SECONDS": "30",
    "OUTBOX_SHARDS": "8",
    "LOG_LEVEL": "ERROR",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
"""Backoff capped at a second so rolled-back entries come back within the scenario; the shortest lease
the settings allow (3x the 10 s claim-to-finalize budget)."""
KILL_AFTER_OPERATIONS = ("TransactWriteItems", "SendMessageBatch", "BatchGetItem", "UpdateItem")
STREAM_TAKE_SECONDS = 0.25
"""How long an idle doorbell relay waits for its lane's next batch before looking at the stop flag."""
INGEST_MAX_TRIES = 60
LARGE_PAYLOAD_EVERY = 8
LARGE_PAYLOAD_TEXT = 3000
"""Every 8th message carries a payload its message item cannot hold in one write unit: stored apart in the
Payloads table (ADR 0023), so the payload's write, its faults and the relay's second read are in the run."""
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RELAY_PROCESS = (sys.executable, "-m", "chaos.relay_process")


@dataclass(frozen=True)
class Scenario:
    messages: int = 300
    relays: int = 3
    """In-process relays: faults on their clients, crashes simulated by a KillSwitch."""
    kills: int = 6
    """Simulated crashes of in-process relays."""
    process_relays: int = 1
    """`outbox relay --once` subprocesses (no faults: a subprocess cannot get an in-process injector)."""
    sigkills: int = 2
    """Real SIGKILLs of subprocess relays."""
    doorbell_relays: int = 2
    """In-process relays rung by the Outbox table's stream (one lane each of the event source mapping),
    with the same faults and kill switches as the sweeping ones; 0: no doorbell, sweeps only."""
    stream_drop: float = 0.1
    """Probability that a stream record never rings."""
    stream_duplicate: float = 0.1
    """Probability that a stream record rings twice (the copy up to `stream_max_delay_seconds` later)."""
    stream_delay: float = 0.2
    """Probability that a polled batch of records is held back up to `stream_max_delay_seconds`."""
    stream_reorder: float = 0.2
    """Probability that a stream record is delivered behind records written after it."""
    stream_max_delay_seconds: float = 3.0
    fault_rate: float = 0.1
    fifo: bool = False
    clients: int = 4
    seed: int = 7
    relay_run_seconds: float = 6.0
    max_chaos_seconds: float = 120.0
    drain_budget_seconds: float = 120.0
    ingest_pause_seconds: float = 0.0
    """Pause between one client's requests, to spread ingest over the relays' kills."""
    sample_interval_seconds: float = 0.25
    progress_seconds: float = 0.0
    """Print a progress line to stderr this often during ingest (0: never)."""
    """Pause between two status scans (each reads the whole Messages table: widen it for big runs)."""

    consumers: int = 0
    """Consumer lanes reading the queue through the consumer helper (chaos/consumers.py); 0: none, the
    checker drains the queue itself and messages stay QUEUED."""
    consumer_crash: float = 0.05
    consumer_timeout: float = 0.03
    consumer_fail: float = 0.05
    consumer_lost_delete: float = 0.08

    groups_per_client: int = 3
    """FIFO groups per ingest client. A FIFO relay sends at most one entry per group in a `SendMessageBatch`
    (docs/design.md §4.3), so few groups mean few messages per call and a slow drain."""

    @property
    def groups(self) -> int:
        # each FIFO group belongs to one client: its order is defined (docs/design.md §4.7)
        return self.clients * self.groups_per_client

    @property
    def perturbation(self) -> Perturbation:
        return Perturbation(
            drop=self.stream_drop,
            duplicate=self.stream_duplicate,
            delay=self.stream_delay,
            reorder=self.stream_reorder,
            max_delay_seconds=self.stream_max_delay_seconds,
        )


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    simulated_kills: int = 0
    kills_by_moment: Counter[str] = field(default_factory=Counter)
    sigkills: int = 0
    process_runs: int = 0
    process_sent: int = 0
    process_late_fifo_resends: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    faults_by_operation: Counter[str] = field(default_factory=Counter)
    faulted_calls: int = 0
    relay_runs: int = 0
    """In-process sweeps (every shard per run)."""
    relay: RunSummary = field(default_factory=RunSummary)
    """Every in-process run, sweeps and doorbell runs (and the drain's, added at the end)."""
    sweep_sent: int = 0
    doorbell_runs: int = 0
    doorbell_kills: int = 0
    doorbell: RunSummary = field(default_factory=RunSummary)
    doorbell_runs_sharing_a_shard: int = 0
    """Doorbell runs that started while another doorbell run was working a shard they were rung for."""
    doorbell_runs_beside_a_sweep: int = 0
    """Doorbell runs that started while a sweep (in-process or a relay process) was running."""
    max_doorbell_runs_on_a_shard: int = 0
    live_sweeps: int = 0
    live_rung: Counter[str] = field(default_factory=Counter)
    ingest_retries: int = 0
    ingest_replays: int = 0
    ingest_abandoned: int = 0
    ingest_bugs: list[str] = field(default_factory=list)
    max_live_relays: int = 0
    live_relays: int = 0

    def absorb(self, injectors: list[FaultInjector], counter: CallCounter) -> None:
        """Fold a finished client's fault and call counts in, so the client can be freed (a big run has
        hundreds of relay runs; keeping every client alive cost gigabytes)."""
        by_kind, by_operation = fault_counts(injectors)
        self.add_faults(by_kind, by_operation, counter.total)

    def add_faults(self, by_kind: Mapping[str, int], by_operation: Mapping[str, int], calls: int) -> None:
        with self.lock:
            self.faults.update(by_kind)
            self.faults_by_operation.update(by_operation)
            self.faulted_calls += calls

    def relay_started(self, shards: frozenset[str] | None = None) -> None:
        """A run starts: a sweep (`shards` None) or a doorbell run over the shards it was rung for."""
        with self.lock:
            self.live_relays += 1
            self.max_live_relays = max(self.max_live_relays, self.live_relays)
            if shards is None:
                self.live_sweeps += 1
                return
            self.doorbell_runs_sharing_a_shard += any(self.live_rung[shard] for shard in shards)
            self.doorbell_runs_beside_a_sweep += self.live_sweeps > 0
            self.live_rung.update(shards)
            self.max_doorbell_runs_on_a_shard = max(
                self.max_doorbell_runs_on_a_shard, *(self.live_rung[shard] for shard in shards), 0
            )

    def relay_ended(self, shards: frozenset[str] | None = None) -> None:
        with self.lock:
            self.live_relays -= 1
            if shards is None:
                self.live_sweeps -= 1
            else:
                self.live_rung.subtract(shards)


class OffsetClock:
    """Wall-clock time moved forward (past every lease and backoff, for the drain); monotonic stays real."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


class _Run:
    def __init__(
        self, scenario: Scenario, aws: EmbeddedAws, resources: Resources, settings: Settings
    ) -> None:
        self.scenario = scenario
        self.aws = aws
        self.resources = resources
        self.settings = settings
        self.tally = Tally()
        self.rng = random.Random(scenario.seed)  # noqa: S311 - a reproducible schedule, not security
        self.ingest_done = threading.Event()
        self.stop = threading.Event()
        self.slots: dict[int, KillSwitch | None] = {}
        self.accepted: list[Accepted] = []
        self.accepted_lock = threading.Lock()
        self.ingest_seconds = 0.0
        self.last_progress = 0.0
        self.dedup_ledger: DedupLedger | None = None
        """FIFO: shared by every relay's SQS faults, so none fails a resend SQS would accept."""
        self.feed: StreamFeed | None = None
        """The doorbell's perturbed stream, when the scenario has doorbell relays."""
        self.consumer_log = ConsumerLog()
        self.consumers_stop = threading.Event()
        self.effects_table = f"{resources.messages_table.removesuffix('-messages')}-effects"

    def client(self, service: str, session: Any = None) -> Any:
        """A client of its own (faults and kill switches are per client), built as `outbox.core.clients` does.
        A caller that builds many passes its own session, which loads each service model once."""
        return (session or botocore.session.get_session()).create_client(
            service, endpoint_url=self.aws.endpoint_url, config=CLIENT_CONFIG, region_name="us-east-1"
        )

    # -- ingest ------------------------------------------------------------------------------------

    def ingest_client(self, number: int) -> None:
        scenario = self.scenario
        dynamodb = self.client("dynamodb")
        injector = install_faults(
            dynamodb, INGEST_DYNAMODB_FAULTS, scenario.fault_rate, scenario.seed * 100 + number
        )
        counter = CallCounter(dynamodb)
        try:
            self._ingest(number, dynamodb)
        finally:
            self.tally.absorb([injector], counter)

    def _ingest(self, number: int, dynamodb: Any) -> None:
        scenario = self.scenario
        rng = random.Random(scenario.seed * 1000 + number)  # noqa: S311
        for index in range(number, scenario.messages, scenario.clients):
            size = LARGE_PAYLOAD_TEXT if index % LARGE_PAYLOAD_EVERY == 0 else rng.randrange(0, 400)
            payload = {"n": index, "client": number, "text": "chaos ✓ " + "x" * size}
            group = f"g{index % scenario.groups}" if scenario.fifo else None
            key = f"chaos-{scenario.seed}-{index}"
            self._accept_one(dynamodb, index, payload, group, key)
            if scenario.ingest_pause_seconds:
                time.sleep(rng.uniform(0, 2 * scenario.ingest_pause_seconds))

    def _accept_one(
        self, dynamodb: Any, index: int, payload: dict[str, Any], group: str | None, key: str
    ) -> None:
        for attempt in range(INGEST_MAX_TRIES):
            try:
                result = enqueue(
                    payload,
                    settings=self.settings,
                    client=dynamodb,
                    attributes={"n": str(index)},
                    group_id=group,
                    idempotency_key=key,
                )
            except InvalidRequest as exc:  # 4xx for a valid request, or 409 for our own replay: a bug
                with self.tally.lock:
                    self.tally.ingest_bugs.append(f"{key}: {exc.code} {exc.message}")
                return
            except Exception:
                with self.tally.lock:
                    self.tally.ingest_retries += 1
                time.sleep(min(0.2, 0.01 * 2**attempt))
                continue
            with self.accepted_lock, self.tally.lock:
                self.tally.ingest_replays += int(result.replayed)
                self.accepted.append(
                    Accepted(result.message_id, index, key, group, payload, time.monotonic())
                )
            return
        with self.tally.lock:
            self.tally.ingest_abandoned += 1

    # -- in-process relays -------------------------------------------------------------------------

    def relay_slot(self, slot: int) -> None:
        """A sweeping relay: every shard, run after run, as the schedule invokes it."""
        generation = 0
        session = botocore.session.get_session()  # used by this thread only
        while not self.stop.is_set():
            generation += 1
            summary = self._relay_run(slot, generation, session, None)
            if summary is not None and summary.sent == 0:
                time.sleep(0.5)

    def doorbell_slot(self, feed: StreamFeed, slot: int, lane: int) -> None:
        """A doorbell relay: one lane of the mapping, one invocation per batch of its (perturbed) records,
        run as the handler runs it (`relay_rung` over the rung shards)."""
        generation = 0
        session = botocore.session.get_session()  # used by this thread only
        while not self.stop.is_set():
            event = feed.take(lane, timeout=STREAM_TAKE_SECONDS)
            if event is None:
                continue
            generation += 1
            self._relay_run(slot, generation, session, shards_rung(event) or frozenset())

    def _relay_run(
        self, slot: int, generation: int, session: Any, shards: frozenset[str] | None
    ) -> RunSummary | None:
        """One run of an in-process relay on clients of its own, with faults and a kill switch: a sweep
        (`shards` None) or a doorbell run over `shards`. None when it was killed."""
        scenario = self.scenario
        dynamodb, sqs = self.client("dynamodb", session), self.client("sqs", session)
        seed = scenario.seed * 10_000 + slot * 100 + generation
        injectors = [
            install_faults(dynamodb, RELAY_DYNAMODB_FAULTS, scenario.fault_rate, seed),
            install_faults(sqs, RELAY_SQS_FAULTS, scenario.fault_rate, seed + 1, self.dedup_ledger),
        ]
        counter = CallCounter(dynamodb, sqs)
        switch = KillSwitch([dynamodb, sqs])
        self.slots[slot] = switch
        relay = Relay(
            dynamodb=dynamodb,
            sqs=sqs,
            settings=self.settings,
            retry_policy=RELAY_RETRIES,
            config=RELAY_CONFIG,
            rng=random.Random(seed),  # noqa: S311
        )
        self.tally.relay_started(shards)
        summary: RunSummary | None
        try:
            # shards None: `relay.run(deadline)`, what the handler runs for the schedule's event
            summary = relay_rung(relay, time.monotonic() + scenario.relay_run_seconds, shards)
        except Crash:
            summary = None
        finally:
            self.tally.relay_ended(shards)
            self.slots[slot] = None
        self.tally.absorb(injectors, counter)
        with self.tally.lock:
            if shards is None:
                self.tally.relay_runs += 1
            else:
                self.tally.doorbell_runs += 1
            if switch.crashed:
                self.tally.simulated_kills += 1
                self.tally.doorbell_kills += shards is not None
                self.tally.kills_by_moment[
                    f"after {switch.after_operation}" if switch.after_operation else "random moment"
                ] += 1
            if summary is not None:
                self.tally.relay.merge(summary)
                if shards is None:
                    self.tally.sweep_sent += summary.sent
                else:
                    self.tally.doorbell.merge(summary)
        return summary

    def killer(self) -> None:
        """Trips the kill switch of a running in-process relay at random moments until `kills` crashed."""
        scenario = self.scenario
        while not self.stop.is_set():
            with self.tally.lock:
                done = self.tally.simulated_kills
            if done >= scenario.kills:
                return
            due = self._kill_due(done, scenario.kills)
            time.sleep(self.rng.uniform(0.1, 0.8))
            if not due:
                continue
            live = [switch for switch in self.slots.values() if switch is not None and not switch.tripped]
            if not live:
                continue
            switch = self.rng.choice(live)
            if self.rng.random() < 0.5:
                switch.trip()
            else:
                switch.after_operation = self.rng.choice(KILL_AFTER_OPERATIONS)

    # -- subprocess relays -------------------------------------------------------------------------

    def process_slot(self, slot: int) -> None:
        """Run `chaos.relay_process` (a relay with faults on) over and over; SIGKILL some of them."""
        scenario = self.scenario
        environment = {
            **os.environ,
            **self.resources.environment(),
            "AWS_ENDPOINT_URL": self.aws.endpoint_url,
        }
        rng = random.Random(scenario.seed * 7 + slot)  # noqa: S311
        generation = 0
        lifetimes: list[float] = []  # of this slot's recent runs that ended by themselves
        while not self.stop.is_set():
            generation += 1
            with self.tally.lock:
                done = self.tally.sigkills
            kill = self._kill_due(done, scenario.sigkills) and rng.random() < 0.6
            command = [
                *RELAY_PROCESS,
                f"--seed={scenario.seed * 10_000 + 5_000 + slot * 100 + generation}",
                f"--fault-rate={scenario.fault_rate}",
                f"--max-seconds={scenario.relay_run_seconds}",
            ]
            if self.dedup_ledger is not None:
                command.append(f"--dedup-ledger={self.dedup_ledger.path}")
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=environment,
                cwd=PROJECT_ROOT,
            )
            self.tally.relay_started()
            launched = time.monotonic()
            try:
                out, _ = process.communicate(timeout=_kill_after(rng, lifetimes) if kill else 120)
                lifetimes[:] = [*lifetimes[-4:], time.monotonic() - launched]
            except subprocess.TimeoutExpired:
                process.kill()  # SIGKILL
                out, _ = process.communicate()
                with self.tally.lock:
                    self.tally.sigkills += 1
            finally:
                self.tally.relay_ended()
            self._record_process(out)

    def _record_process(self, out: str) -> None:
        """Take the last fault report and the summary (absent when killed) from a relay process's output."""
        faults: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for line in out.splitlines():
            with suppress(ValueError, AttributeError):
                report = json.loads(line)
                faults = report.get("faults", faults)
                summary = report.get("summary", summary)
        with self.tally.lock:
            self.tally.process_runs += 1
            self.tally.process_sent += int(summary.get("sent", 0))
            self.tally.process_late_fifo_resends += int(summary.get("resent_after_window", 0))
        self.tally.add_faults(
            faults.get("by_kind", {}), faults.get("by_operation", {}), int(faults.get("calls", 0))
        )

    def _kill_due(self, done: int, target: int) -> bool:
        """Kills are spread over the ingest: the n-th is due once about n/target of the messages are in."""
        with self.accepted_lock:
            progress = 1.0 if self.ingest_done.is_set() else len(self.accepted) / self.scenario.messages
        return done < target and done < target * progress + 1

    # -- phases ------------------------------------------------------------------------------------

    def report_progress(self, started: float) -> None:
        """One line on stderr, at most every `progress_seconds`: a big run takes many minutes on moto."""
        if not self.scenario.progress_seconds or time.monotonic() - self.last_progress < 1:
            return
        self.last_progress = time.monotonic()
        with self.accepted_lock, self.tally.lock:
            accepted = len(self.accepted)
            kills, sigkills = self.tally.simulated_kills, self.tally.sigkills
        print(
            f"chaos: {accepted:,}/{self.scenario.messages:,} accepted, {kills} simulated kills, "
            f"{sigkills} SIGKILLs, {time.monotonic() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def chaos_phase(self) -> None:
        scenario = self.scenario
        started = time.monotonic()
        ingest = [
            threading.Thread(target=self.ingest_client, args=(n,), name=f"ingest-{n}")
            for n in range(scenario.clients)
        ]
        relays = [
            threading.Thread(target=self.relay_slot, args=(n,), name=f"relay-{n}")
            for n in range(scenario.relays)
        ]
        processes = [
            threading.Thread(target=self.process_slot, args=(n,), name=f"relay-process-{n}")
            for n in range(scenario.process_relays)
        ]
        doorbells: list[threading.Thread] = []
        if scenario.doorbell_relays:
            self.feed = feed = self._stream_feed()  # before the first write: the mapping starts at LATEST
            doorbells = [
                threading.Thread(
                    target=self.doorbell_slot, args=(feed, scenario.relays + n, n), name=f"doorbell-{n}"
                )
                for n in range(scenario.doorbell_relays)
            ]
            doorbells.append(threading.Thread(target=feed.run, args=(self.stop,), name="stream-feed"))
        killer = threading.Thread(target=self.killer, name="killer")
        self.consumer_threads = [
            threading.Thread(target=self.consumer_lane, args=(n,), name=f"consumer-{n}")
            for n in range(scenario.consumers)
        ]
        for thread in [*ingest, *relays, *processes, *doorbells, killer, *self.consumer_threads]:
            thread.start()
        for thread in ingest:
            while thread.is_alive():
                thread.join(timeout=self.scenario.progress_seconds or None)
                self.report_progress(started)
        self.ingest_done.set()
        self.ingest_seconds = time.monotonic() - started
        while time.monotonic() - started < scenario.max_chaos_seconds:
            with self.tally.lock:
                kills_done = self.tally.simulated_kills >= scenario.kills or scenario.relays == 0
                sigkills_done = self.tally.sigkills >= scenario.sigkills or scenario.process_relays == 0
            if kills_done and sigkills_done:
                break
            time.sleep(0.2)
        self.stop.set()
        for thread in [*relays, *processes, *doorbells, killer]:
            thread.join()
        if self.feed is not None:
            self.feed.close()

    def consumer_lane(self, number: int) -> None:
        """One consumer lane, with faults on its DynamoDB client (lost responses on its claims and
        completions among them) until the consumers are stopped after the drain."""
        scenario = self.scenario
        dynamodb = self.client("dynamodb")
        injector = install_faults(
            dynamodb, CONSUMER_DYNAMODB_FAULTS, scenario.fault_rate, scenario.seed * 500 + number
        )
        counter = CallCounter(dynamodb)
        consumer = ChaosConsumer(
            sqs=self.client("sqs"),
            dynamodb=dynamodb,
            queue_url=self.settings.queue_url,
            messages_table=self.settings.messages_table,
            effects_table=self.effects_table,
            faults=ConsumerFaults(
                crash=scenario.consumer_crash,
                timeout=scenario.consumer_timeout,
                fail=scenario.consumer_fail,
                lost_delete=scenario.consumer_lost_delete,
            ),
            log=self.consumer_log,
            rng=random.Random(scenario.seed * 700 + number),  # noqa: S311
        )
        try:
            consumer.run(self.consumers_stop)
        finally:
            self.tally.absorb([injector], counter)

    def consumer_drain(self, figures: Figures) -> None:
        """Let the consumers finish: until every accepted message is COMPLETED and the queue is empty, or
        the budget is spent. Their faults stay on (at most two per message, chaos/consumers.py)."""
        dynamodb, sqs = self.client("dynamodb"), self.client("sqs")
        ids = {message.message_id for message in self.accepted}
        deadline = time.monotonic() + self.scenario.drain_budget_seconds
        while time.monotonic() < deadline:
            self._redrive_dead_letters(figures, dynamodb, sqs)
            statuses = read_statuses(dynamodb, self.settings.messages_table)
            done = sum(1 for message_id in ids if statuses.get(message_id) == "COMPLETED")
            waiting = sqs.get_queue_attributes(
                QueueUrl=self.settings.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            in_queue = int(waiting["ApproximateNumberOfMessages"]) + int(
                waiting["ApproximateNumberOfMessagesNotVisible"]
            )
            if self.scenario.progress_seconds:
                print(f"chaos: consumers completed {done:,}/{len(ids):,}", file=sys.stderr, flush=True)
            if done == len(ids) and in_queue == 0:
                break
            time.sleep(0.5)
        self.consumers_stop.set()
        for thread in self.consumer_threads:
            thread.join()
        figures.consumer_drain_seconds = round(
            self.scenario.drain_budget_seconds - (deadline - time.monotonic()), 1
        )

    def _redrive_dead_letters(self, figures: Figures, dynamodb: Any, sqs: Any) -> None:
        """What reached the dead-letter queue (five receives without a delete) goes through the outbox again,
        as an operator's `outbox dlq redrive --all` sends it (ADR 0020), and a clean relay sends it. FIFO:
        SQS would drop a resend within 5 minutes of the first as a duplicate, so the redrive leaves those
        (`dlq.redrive` refuses them) and the checker reports them in the DLQ."""
        redriven = dlq.redrive(
            None,
            sqs=sqs,
            dynamodb=dynamodb,
            settings=self.settings,
            dlq_url=self.resources.dlq_url,
            actor="chaos-drain",
            peek_seconds=2,
        )
        # Every message found there was marked DEAD_LETTERED (an audited move, ADR 0020), whatever came next:
        # redriven, or completed meanwhile by a copy still in the main queue (a consumer may claim a
        # DEAD_LETTERED message).
        figures.redriven.extend(result.message_id for result in redriven if result.message_id)
        if not any(result.outcome == "redriven" for result in redriven):
            return
        relay = Relay(
            dynamodb=dynamodb,
            sqs=sqs,
            settings=self.settings,
            clock=OffsetClock(timedelta(hours=2)),
            retry_policy=RELAY_RETRIES,
        )
        relay.run(time.monotonic() + 30)

    def _stream_feed(self) -> StreamFeed:
        """The Outbox table's stream, read from now on by an unfaulted client, perturbed as configured."""
        table = self.client("dynamodb").describe_table(TableName=self.settings.outbox_table)["Table"]
        tail = StreamTail(self.client("dynamodbstreams"), table["LatestStreamArn"])
        rng = random.Random(self.scenario.seed * 31 + 17)  # noqa: S311
        return StreamFeed(
            tail, lanes=self.scenario.doorbell_relays, perturbation=self.scenario.perturbation, rng=rng
        ).start()

    def drain_phase(self, figures: Figures) -> None:
        dynamodb, sqs = self.client("dynamodb"), self.client("sqs")
        for message_id in list(admin.failed_message_ids(dynamodb, self.settings)):
            admin.requeue(message_id, dynamodb=dynamodb, settings=self.settings, actor="chaos-drain")
            figures.requeued.append(message_id)
        clock = OffsetClock(timedelta(hours=2))  # past every lease (30 s) and backoff (1 s)
        relay = Relay(
            dynamodb=dynamodb, sqs=sqs, settings=self.settings, clock=clock, retry_policy=RELAY_RETRIES
        )
        deadline = time.monotonic() + self.scenario.drain_budget_seconds
        while time.monotonic() < deadline:
            summary = relay.run(min(deadline, time.monotonic() + 30))
            figures.drain_runs += 1
            figures.drain_sent += summary.sent
            if self.scenario.progress_seconds:
                print(f"chaos: drain sent {figures.drain_sent:,}", file=sys.stderr, flush=True)
            summary.resent_after_window = 0  # its clock runs 2 h ahead: every resend would look late
            self.tally.relay.merge(summary)
            left = dynamodb.scan(
                TableName=self.settings.outbox_table, Select="COUNT", ConsistentRead=True, **entries_only()
            )
            if not left["Count"]:  # the shard leases (SIGKILLed relays leave theirs held) are no entries
                return
            if summary.sent == 0:
                time.sleep(0.2)


def _quiet_relay_loggers() -> None:
    """Rollbacks and poison are expected here. Powertools gives each module's child logger its own level,
    so setting the service logger's level is not enough."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("outbox-relay", "outbox-admin")):
            logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, **SCENARIO_SETTINGS, **extra}):
        for name in ("AWS_PROFILE",):
            os.environ.pop(name, None)
        yield


def run_scenario(scenario: Scenario) -> Figures:
    """Run one scenario end to end on its own embedded AWS and tables; returns the figures (`Figures.ok`)."""
    started = time.monotonic()
    _quiet_relay_loggers()
    aws = EmbeddedAws().start()
    scratch = tempfile.TemporaryDirectory(prefix="chaos-")
    try:
        with _environment({"AWS_ENDPOINT_URL": aws.endpoint_url}):
            setup: Any = botocore.session.get_session()
            dynamodb = setup.create_client("dynamodb", endpoint_url=aws.endpoint_url, region_name="us-east-1")
            sqs = setup.create_client("sqs", endpoint_url=aws.endpoint_url, region_name="us-east-1")
            # moto's backends are process-wide: a second scenario in one process (the tests run two) sees
            # the first one's tables, so every scenario gets names of its own.
            prefix = f"chaos-{'fifo' if scenario.fifo else 'std'}-{uuid.uuid4().hex[:8]}"
            resources = provision(dynamodb, sqs, prefix=prefix, fifo=scenario.fifo)
            if scenario.consumers:
                dynamodb.create_table(**shipments_table_definition(f"{prefix}-effects"))
            settings = Settings.from_env({**os.environ, **resources.environment()})
            run = _Run(scenario, aws, resources, settings)
            if scenario.fifo:
                run.dedup_ledger = DedupLedger(Path(scratch.name) / "dedup.sqlite")
            sampler = StatusSampler(
                run.client("dynamodb"), settings.messages_table, interval=scenario.sample_interval_seconds
            )
            sampler.start()
            run.chaos_phase()
            chaos_seconds = time.monotonic() - started
            figures = Figures(scenario=asdict(scenario) | {"groups": scenario.groups})
            figures.chaos_seconds = round(chaos_seconds, 1)
            figures.ingest_seconds = round(run.ingest_seconds, 1)
            run.drain_phase(figures)
            consumer_side = None
            if scenario.consumers:
                run.consumer_drain(figures)
                consumer_side = ConsumerSide(log=run.consumer_log, effects_table=run.effects_table)
            sampler.stop()
            _fill_figures(figures, run.tally)
            if run.feed is not None:
                figures.stream = run.feed.counts.as_dict()
            figures.entry_faults_spared = run.dedup_ledger.spared() if run.dedup_ledger else 0
            check(
                figures,
                run.accepted,
                sampler=sampler,
                dynamodb=dynamodb,
                sqs=sqs,
                resources=resources,
                settings=settings,
                fifo=scenario.fifo,
                consumers=consumer_side,
            )
    finally:
        aws.stop()
        scratch.cleanup()
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


def _fill_figures(figures: Figures, tally: Tally) -> None:
    calls = tally.faulted_calls
    figures.faults = dict(sorted(tally.faults.items()))
    figures.faults_by_operation = dict(sorted(tally.faults_by_operation.items()))
    figures.faults_total = sum(tally.faults.values())
    figures.faulted_client_calls = calls
    figures.fault_share_of_calls = round(figures.faults_total / calls, 4) if calls else 0.0
    figures.simulated_kills = tally.simulated_kills
    figures.kills_by_moment = dict(tally.kills_by_moment)
    figures.sigkills = tally.sigkills
    figures.max_concurrent_relays = tally.max_live_relays
    figures.relay_runs = tally.relay_runs
    figures.sweep_sent = tally.sweep_sent
    figures.doorbell_runs = tally.doorbell_runs
    figures.doorbell_sent = tally.doorbell.sent
    figures.doorbell_kills = tally.doorbell_kills
    figures.doorbell_summary = tally.doorbell.as_dict()
    figures.doorbell_runs_sharing_a_shard = tally.doorbell_runs_sharing_a_shard
    figures.doorbell_runs_beside_a_sweep = tally.doorbell_runs_beside_a_sweep
    figures.max_doorbell_runs_on_a_shard = tally.max_doorbell_runs_on_a_shard
    figures.process_relay_runs = tally.process_runs
    figures.process_relay_sent = tally.process_sent
    figures.late_fifo_resends = tally.relay.resent_after_window + tally.process_late_fifo_resends
    figures.ingest_retries = tally.ingest_retries
    figures.ingest_replays = tally.ingest_replays
    figures.ingest_abandoned = tally.ingest_abandoned
    figures.ingest_bugs = tally.ingest_bugs[:20]
    figures.relay_summary = tally.relay.as_dict()


def _kill_after(rng: random.Random, lifetimes: list[float]) -> float:
    """When to SIGKILL a relay process: a random moment of a run as long as the slot's recent runs were
    (their median), so that kills land inside a run also when runs are short (a drained outbox, a fast
    machine); 1.5-4 s until a run has ended by itself."""
    if not lifetimes:
        return rng.uniform(1.5, 4.0)
    typical = sorted(lifetimes)[len(lifetimes) // 2]
    return rng.uniform(0.3 * typical, 0.9 * typical)

"""A modeled throughput table (issue #14): outbox shards x concurrent relays x relay memory -> messages/s,
up to a configuration that sustains 10,000 messages/s, with the AWS quotas to raise for it.

`python -m bench.throughput` measures the relay's own CPU per message on this machine (cProfile over a
relay run on in-process moto, counting only our code, boto3/botocore and what they call directly), scales
it to Lambda (an assumption), and writes bench/results/throughput.md. Latencies are bench/model.py's
(ADR 0012); every published figure below carries its URL, every assumption says so.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import pstats
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final
from unittest import mock

import boto3
from moto import mock_aws

from bench import model
from bench.run import payload_maker
from bench.units import CallRecord
from outbox.api import enqueue
from outbox.core.clients import CLIENT_CONFIG, reset_clients
from outbox.core.settings import Settings
from outbox.local.emulator import DUMMY_CREDENTIALS
from outbox.provisioning import provision
from relay.core import Relay, RelayConfig

# -- published figures (each with its URL) ----------------------------------------------------------

LAMBDA_MEMORY_DOC: Final = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html"
LAMBDA_CONCURRENCY_DOC: Final = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html"
DYNAMODB_QUOTAS_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html"
)
DYNAMODB_PARTITIONS_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.Partitions.html"
)
DYNAMODB_HOT_KEY_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
    "throttling-key-range-limit-exceeded-mitigation.html"
)
DYNAMODB_SPLIT_FOR_HEAT_BLOG: Final = (
    "https://aws.amazon.com/blogs/database/"
    "part-3-scaling-dynamodb-how-partitions-hot-keys-and-split-for-heat-impact-performance/"
)
DYNAMODB_ON_DEMAND_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html"
)
DYNAMODB_WARM_DOC: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html"
)
API_GATEWAY_QUOTAS_DOC: Final = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
SQS_QUOTAS_DOC: Final = (
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html"
)

LAMBDA_MB_PER_VCPU: Final = 1769
"""Lambda: "at 1,769 MB, a function has the equivalent of one vCPU"; CPU is proportional to memory
(LAMBDA_MEMORY_DOC). Python's GIL keeps one relay at ≤ 1 vCPU of Python work whatever the memory."""
PARTITION_WRITE_UNITS: Final = 1000
"""Per partition: 1,000 write units/s (DYNAMODB_QUOTAS_DOC, DYNAMODB_PARTITIONS_DOC)."""
TABLE_WRITE_UNITS_ON_DEMAND: Final = 40_000
"""On-demand default per-table quota: 40,000 write request units/s (DYNAMODB_QUOTAS_DOC; adjustable)."""
NEW_TABLE_WARM_WRITE_UNITS: Final = 4_000
"""A new on-demand table serves 4,000 write units/s at once (DYNAMODB_WARM_DOC); above that it adapts:
up to double the previous peak at once, more over time (DYNAMODB_ON_DEMAND_DOC)."""
API_STAGE_DEFAULT_RPS: Final = 100
"""The stack's `$default` stage throttle (context `api_rate_limit`, docs/design.md §10): ours, not AWS's."""
API_ACCOUNT_RPS: Final = 10_000
"""API Gateway: 10,000 requests/s per account and Region (API_GATEWAY_QUOTAS_DOC; adjustable)."""
LAMBDA_ACCOUNT_CONCURRENCY: Final = 1000
"""Lambda: 1,000 concurrent executions per account and Region by default (LAMBDA_CONCURRENCY_DOC)."""
DOORBELL_MAX_PARALLELIZATION: Final = 10
"""At most 10 concurrent batches per stream shard (ParallelizationFactor, ADR 0017)."""
SQS_FIFO_MESSAGES: Final = 3_000
"""FIFO, normal mode: 300 API calls/s per action, 3,000 messages/s with batches of 10 (SQS_QUOTAS_DOC)."""
SQS_FIFO_HIGH_THROUGHPUT_MESSAGES: Final = 70_000
"""FIFO high-throughput mode: up to 70,000 messages/s per queue in some Regions, batched (SQS_QUOTAS_DOC)."""

# -- this project's measured figures (bench/results/latest.md, 1 KB messages, relay on leases) ---------

ENTRY_PUT_UNITS: Final = 2.0
"""Ingest's transactional Put of the ≈ 139-byte entry: 1 KB-rounded, transactional writes bill twice."""
ENTRY_DELETE_UNITS: Final = 2.0
"""Finalize's transactional Delete of the entry."""
SHARD_PARTITION_UNITS_PER_MESSAGE: Final = ENTRY_PUT_UNITS + ENTRY_DELETE_UNITS
"""What a message costs its shard's partition (the lease lives in a partition of its own, ADR 0018)."""
RELAY_WRITE_UNITS_PER_MESSAGE: Final = 4.09
"""Measured (bench/results/latest.md): finalize's message update 2 + entry delete 2 + the lease's check,
renews, acquires and releases ≈ 0.09."""
MESSAGE_UPDATE_UNITS: Final = 2.0
"""Finalize's transactional update of the ≈ 1 KB message item (Messages table)."""
MESSAGE_PUT_UNITS: Final = 2.0
"""Ingest's transactional Put of the ≈ 1 KB message item (Messages table)."""
OUTBOX_TABLE_UNITS_PER_MESSAGE: Final = ENTRY_PUT_UNITS + RELAY_WRITE_UNITS_PER_MESSAGE - MESSAGE_UPDATE_UNITS
MESSAGES_TABLE_UNITS_PER_MESSAGE: Final = MESSAGE_PUT_UNITS + MESSAGE_UPDATE_UNITS

MESSAGE_BYTES: Final = 999
"""A 1 KB message item after finalize (bench/results/latest.md)."""
ENTRY_BYTES: Final = 139
SQS_BATCH: Final = 10
TARGET_RATE: Final = 10_000.0

SHARDS: Final = (8, 16, 32, 64)
MEMORIES_MB: Final = (512, 1024, 1769)
THREADS_PER_RELAY: Final = (4, 1)
"""4 = `RelayConfig.parallel_shards` (a relay works 4 shards at once); 1 = one shard per invocation."""

DEFAULT_CPU_MS: Final = 1.0
"""Used only when the measurement is skipped (`--cpu-ms`, tests): an assumption, not a measurement."""

OUR_MODULES: Final = ("/relay/", "/outbox/", "/botocore/", "/boto3/", "/aws_lambda_powertools/", "/tenacity/")
"""Whose own time (cProfile tottime) is the relay's CPU; moto, responses and werkzeug are AWS's stand-in."""


# -- 1. CPU per message, measured -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuMeasurement:
    messages: int
    ours_ms: float
    """Relay CPU ms per message, the figure the model uses: cProfile's (a high estimate)."""
    profiled_ours_ms: float
    """Σ tottime of our functions (and what they call directly) under cProfile, per message."""
    profiled_share: float
    """That sum over the profiled run's total tottime (moto included)."""
    sampled_ms: float
    """The sampled share x the unprofiled thread time, per message: a cross-check (few samples)."""
    sampled_share: float
    """Share of the stack samples of an unprofiled run whose innermost classified frame is ours."""
    samples: int
    total_ms: float
    """thread_time per message of an unprofiled relay run, moto included: an upper bound."""
    measured: bool = True


class _InlineExecutor:
    """`ThreadPoolExecutor`'s surface as `Relay.run` uses it, on the calling thread: cProfile sees one
    thread only, so the measured run works its shards one after another (same calls, no overlap)."""

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "") -> None:
        del max_workers, thread_name_prefix

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        return None

    def map(self, function: Any, iterable: Any) -> Iterator[Any]:
        return iter([function(item) for item in iterable])


STAND_IN_MODULES: Final = ("/moto/", "/responses/", "/werkzeug/")
SAMPLE_SECONDS: Final = 0.001


def _is_stand_in(filename: str) -> bool:
    path = filename.replace(os.sep, "/")
    return any(part in path for part in STAND_IN_MODULES)


def _is_ours(filename: str) -> bool:
    path = filename.replace(os.sep, "/")
    return not _is_stand_in(path) and any(part in path for part in OUR_MODULES)


def classify(frame: FrameType | None) -> str:
    """ "ours", "moto" or "other" for a stack: its innermost frame of a module of ours or of moto's (a
    standard-library or built-in frame counts for the nearest such caller)."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_stand_in(filename):
            return "moto"
        if _is_ours(filename):
            return "ours"
        frame = frame.f_back
    return "other"


class Sampler:
    """Samples one thread's stack every `SAMPLE_SECONDS` from a thread of its own: a statistical profile
    with no per-call overhead in the sampled thread (cProfile's inflates the many small calls)."""

    def __init__(self, thread_id: int) -> None:
        self._thread_id = thread_id
        self._stop = threading.Event()
        self.counts: dict[str, int] = {"ours": 0, "moto": 0, "other": 0}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            frame = sys._current_frames().get(self._thread_id)
            self.counts[classify(frame)] += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


def attribute(stats: dict[Any, Any]) -> tuple[float, float]:
    """(seconds of ours, seconds of all) from pstats' raw table: a function of ours counts its tottime;
    a standard-library or built-in function (json, hmac, datetime...) counts the tottime of its calls
    made directly from a function of ours (one level: what those call in turn is not counted)."""
    ours = 0.0
    total = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, callers) in stats.items():
        total += tottime
        if _is_ours(filename):
            ours += tottime
        elif "/site-packages/" not in filename.replace(os.sep, "/"):
            ours += sum(call[2] for caller, call in callers.items() if _is_ours(caller[0]))
    return ours, total


@contextmanager
def _moto_stack(prefix: str) -> Iterator[tuple[Any, Any, Any]]:
    env = {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}
    with mock_aws(), mock.patch.dict(os.environ, env):
        os.environ.pop("AWS_ENDPOINT_URL", None)
        reset_clients()
        try:
            dynamodb = boto3.client("dynamodb", region_name="us-east-1", config=CLIENT_CONFIG)
            sqs = boto3.client("sqs", region_name="us-east-1", config=CLIENT_CONFIG)
            resources = provision(dynamodb, sqs, prefix=prefix)
            settings = Settings(
                messages_table=resources.messages_table,
                outbox_table=resources.outbox_table,
                queue_url=resources.queue_url,
            )
            yield dynamodb, sqs, settings
        finally:
            reset_clients()


def _relay_once(messages: int, profiler: cProfile.Profile | None, sampler: Sampler | None = None) -> float:
    """Load `messages` 1 KB messages, relay them all; the relaying thread's CPU time (seconds)."""
    with _moto_stack("throughput") as (dynamodb, sqs, settings):
        make, _ = payload_maker(1)
        for number in range(messages):
            enqueue(make(number), settings=settings, client=dynamodb)
        relay = Relay(dynamodb=dynamodb, sqs=sqs, settings=settings, config=RelayConfig())
        sent = 0
        cpu = 0.0
        gc.collect()
        gc.disable()  # a collection of moto's heap would land on whichever frame allocates: ours too
        try:
            with mock.patch("relay.core.ThreadPoolExecutor", _InlineExecutor), sampler or _nothing():
                for _ in range(20):
                    started = time.thread_time()
                    if profiler is not None:
                        profiler.enable()
                    summary = relay.run(time.monotonic() + 600.0)
                    if profiler is not None:
                        profiler.disable()
                    cpu += time.thread_time() - started
                    sent += summary.sent
                    if sent >= messages or summary.sent == 0:
                        break
        finally:
            gc.enable()
        if sent < messages:
            raise RuntimeError(f"the measured relay sent {sent} of {messages} messages")
        return cpu


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def measure_cpu(messages: int) -> CpuMeasurement:
    _relay_once(min(messages, 98), None)  # warm-up: imports, botocore's loaders and caches
    sampler = Sampler(threading.get_ident())
    plain = _relay_once(messages, None, sampler)
    samples = sum(sampler.counts.values())
    sampled = sampler.counts["ours"] / samples if samples else 0.0
    profiler = cProfile.Profile()
    _relay_once(messages, profiler)
    ours, total = attribute(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    share = ours / total if total else 0.0
    return CpuMeasurement(
        messages=messages,
        ours_ms=1000 * ours / messages,
        profiled_ours_ms=1000 * ours / messages,
        profiled_share=share,
        sampled_ms=1000 * sampled * plain / messages,
        sampled_share=sampled,
        samples=samples,
        total_ms=1000 * plain / messages,
    )


def assumed_cpu(cpu_ms: float) -> CpuMeasurement:
    return CpuMeasurement(0, cpu_ms, cpu_ms, 1.0, cpu_ms, 1.0, 0, cpu_ms, measured=False)


# -- 2. per-shard ceilings --------------------------------------------------------------------------


def vcpu_share(memory_mb: int) -> float:
    """vCPU of a Lambda of `memory_mb` (proportional below 1,769 MB; capped at 1 by the GIL)."""
    return min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)


def _record(operation: str, items: int, bytes_moved: int) -> CallRecord:
    return CallRecord("", operation, items, 0.0, 0.0, 0, bytes_moved, failed=False)


def batch_calls(batch: int = RelayConfig().batch_size) -> list[tuple[CallRecord, float]]:
    """One batch's calls, in sequence, each with its share per batch: a Query page of 5 batches, the
    renew, a BatchGetItem, the SendMessageBatch calls of 10, the finalize of 2 x batch + 1 actions."""
    page = RelayConfig().page_size
    sends = math.ceil(batch / SQS_BATCH)
    return [
        (_record("Query", page, page * ENTRY_BYTES), batch / page),
        (_record("UpdateItem", 1, 0), 1.0),
        (_record("BatchGetItem", batch, batch * MESSAGE_BYTES), 1.0),
        (_record("SendMessageBatch", SQS_BATCH, SQS_BATCH * MESSAGE_BYTES), float(sends)),
        (_record("TransactWriteItems", 2 * batch + 1, batch * (MESSAGE_BYTES + ENTRY_BYTES)), 1.0),
    ]


def batch_aws_ms(batch: int = RelayConfig().batch_size) -> float:
    return sum(model.call_ms(record) * share for record, share in batch_calls(batch))


def worker_rate(memory_mb: int, cpu_ms: float, batch: int = RelayConfig().batch_size) -> float:
    """(a) One relay thread on one shard: a batch per (AWS calls in sequence + its CPU at this memory)."""
    seconds = (batch_aws_ms(batch) + batch * cpu_ms / vcpu_share(memory_mb)) / 1000
    return batch / seconds


def partition_rate() -> float:
    """(b) The shard's partition: 1,000 write units/s over 4 units a message."""
    return PARTITION_WRITE_UNITS / SHARD_PARTITION_UNITS_PER_MESSAGE


def shard_rate(memory_mb: int, cpu_ms: float) -> float:
    return min(worker_rate(memory_mb, cpu_ms), partition_rate())


def relay_cpu_rate(memory_mb: int, cpu_ms: float) -> float:
    """What one invocation's CPU can do, all its threads together."""
    return 1000 * vcpu_share(memory_mb) / cpu_ms


# -- 3. the system ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    shards: int
    memory_mb: int
    threads: int
    relays: int
    shard_rate: float
    relay_rate: float
    """One invocation's rate: min(threads x shard rate, its CPU)."""
    rate: float
    """The relay side with the AWS quotas raised: min(shards x shard rate, relays x relay rate)."""
    binding: str
    default_rate: float
    """`rate` under the default quotas (library ingest, standard queue)."""
    default_binding: str
    lambda_concurrency: int

    @property
    def relay_gb(self) -> float:
        return self.relays * self.memory_mb / 1024


def ingest_concurrency(rate: float) -> int:
    """Ingest Lambdas busy at `rate` requests/s: rate x (one 2-item transaction + handler overhead);
    model latencies (ADR 0012), an assumption."""
    seconds = (model.LATENCY["TransactWriteItems"].base_ms + model.HANDLER_OVERHEAD_MS.value) / 1000
    return math.ceil(rate * seconds)


def default_caps(shards: int, relays: int, rate: float) -> dict[str, float]:
    """Caps other than the relay's own, at the default quotas (relay path; ingest via the library)."""
    lanes = shards * min(shards, DOORBELL_MAX_PARALLELIZATION)
    return {
        "Outbox table 40,000 WRU/s": TABLE_WRITE_UNITS_ON_DEMAND / OUTBOX_TABLE_UNITS_PER_MESSAGE,
        "Messages table 40,000 WRU/s": TABLE_WRITE_UNITS_ON_DEMAND / MESSAGES_TABLE_UNITS_PER_MESSAGE,
        "doorbell lanes": rate if relays <= lanes else rate * lanes / relays,
        "Lambda 1,000 concurrency": (
            rate if relays + ingest_concurrency(rate) <= LAMBDA_ACCOUNT_CONCURRENCY else 0.0
        ),
    }


def row(shards: int, memory_mb: int, threads: int, cpu_ms: float) -> Row:
    relays = math.ceil(shards / threads)
    per_shard = shard_rate(memory_mb, cpu_ms)
    per_relay = min(threads * per_shard, relay_cpu_rate(memory_mb, cpu_ms))
    by_shards = shards * per_shard
    by_relays = relays * per_relay
    rate = min(by_shards, by_relays)
    if by_relays < by_shards:
        binding = "relay CPU (Lambda memory)"
    elif per_shard == partition_rate():
        binding = "partition 1,000 WRU/s per shard"
    else:
        binding = "relay call latency + CPU per shard"
    caps = default_caps(shards, relays, rate)
    name, cap = min(caps.items(), key=lambda item: item[1])
    default_rate, default_binding = (cap, name) if cap < rate else (rate, binding)
    return Row(
        shards,
        memory_mb,
        threads,
        relays,
        per_shard,
        per_relay,
        rate,
        binding,
        default_rate,
        default_binding,
        relays + ingest_concurrency(rate),
    )


def size_key(item: Row) -> tuple[int, float, int]:
    """ "Smaller": fewer shards, then less relay memory held at once (relays x MB), then fewer relays."""
    return (item.shards, item.relay_gb, item.relays)


def table(cpu_ms: float) -> list[Row]:
    rows = [
        row(shards, memory, threads, cpu_ms)
        for shards in SHARDS
        for memory in MEMORIES_MB
        for threads in THREADS_PER_RELAY
    ]
    return sorted(rows, key=size_key)


def smallest_sustaining(rows: Sequence[Row], target: float = TARGET_RATE) -> Row | None:
    """The first row (in `size_key` order) whose relay rate, quotas raised, reaches `target`."""
    return next((item for item in sorted(rows, key=size_key) if item.rate >= target), None)


def quotas_to_raise(chosen: Row) -> list[str]:
    rate = TARGET_RATE
    outbox_units = rate * OUTBOX_TABLE_UNITS_PER_MESSAGE
    messages_units = rate * MESSAGES_TABLE_UNITS_PER_MESSAGE
    return [
        f"DynamoDB on-demand per-table write quota ({TABLE_WRITE_UNITS_ON_DEMAND:,} WRU/s default, "
        f"{DYNAMODB_QUOTAS_DOC}): the Outbox table needs {outbox_units:,.0f} WRU/s and the Messages "
        f"table {messages_units:,.0f} WRU/s at {rate:,.0f} msg/s — raise both (e.g. to 50,000) via "
        "Service Quotas.",
        f"DynamoDB warm throughput: a new on-demand table serves {NEW_TABLE_WARM_WRITE_UNITS:,} WRU/s "
        f"at once ({DYNAMODB_WARM_DOC}) and takes up to double its previous peak at once "
        f"({DYNAMODB_ON_DEMAND_DOC}): pre-warm both tables to ≥ {outbox_units:,.0f} WRU/s before the "
        "launch (not set by the stack).",
        f"OUTBOX_SHARDS = {chosen.shards} (drain first, docs/design.md §2): each shard is one partition "
        f"key at ≤ {partition_rate():.0f} msg/s.",
        f"API Gateway (only for ingest over HTTP, one message per request): context `api_rate_limit` "
        f"(stack default {API_STAGE_DEFAULT_RPS} rps) to ≥ {rate:,.0f}, and the account quota of "
        f"{API_ACCOUNT_RPS:,} rps per Region ({API_GATEWAY_QUOTAS_DOC}), which the target equals: raise "
        "it for headroom. The library API (`enqueue`) does not pass API Gateway.",
        f"SQS: a standard queue needs nothing ({SQS_QUOTAS_DOC}); a FIFO queue in normal mode stops at "
        f"{SQS_FIFO_MESSAGES:,} msg/s: turn on high-throughput mode (up to "
        f"{SQS_FIFO_HIGH_THROUGHPUT_MESSAGES:,} msg/s per queue in some Regions) and spread the load "
        "over many message groups (one group lives in one shard: ≤ 250 msg/s).",
        f"Lambda concurrency: ≈ {chosen.lambda_concurrency} executions ({chosen.relays} relays + "
        f"ingest) fit the default {LAMBDA_ACCOUNT_CONCURRENCY:,} ({LAMBDA_CONCURRENCY_DOC}); raise it "
        "if other functions share the account (new accounts start lower), and give the relay "
        f"reserved concurrency ≥ {chosen.relays}.",
    ]


# -- 4. the report ----------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def render(cpu: CpuMeasurement, command: str) -> str:
    rows = table(cpu.ours_ms)
    chosen = smallest_sustaining(rows)
    lines = [
        "# Modeled relay throughput (issue #14)",
        "",
        f"Command: `{command}`. A model, not a load test: AWS latencies are bench/model.py's (ADR 0012), "
        "the CPU per message is measured on this machine and scaled to Lambda (an assumption).",
        "",
        "## CPU per message (measured)",
        "",
    ]
    if cpu.measured:
        lines += [
            f"* **{cpu.ours_ms:.3f} ms per message** of relay CPU on this machine ({cpu.messages:,} "
            "messages of 1 KB, `RelayConfig()` defaults: batch 49, 8 shards).",
            "* Method: a relay run on in-process moto (`mock_aws`) under cProfile, its shard workers on the "
            "calling thread (an inline executor: cProfile sees one thread), Python's garbage collector off "
            "during the relay runs (a collection of moto's heap would be charged to whatever frame "
            f"triggers it). Counted: the tottime of every function under {', '.join(OUR_MODULES)} (moto, "
            "responses and werkzeug excluded), plus the tottime of standard-library and built-in functions "
            "(json, hmac, hashing, datetime, ...) in their calls made directly from those (one level). "
            f"That is {cpu.profiled_share:.1%} of the profiled run. It includes cProfile's per-call "
            "overhead, which inflates code of many small calls like ours: **a high estimate**, kept so that "
            "the model errs towards less throughput.",
            f"* Cross-checks: the relay thread's unprofiled CPU (`time.thread_time`) is {cpu.total_ms:.3f} "
            "ms/message with moto included (an upper bound); a sampler thread reading that thread's stack "
            f"every {SAMPLE_SECONDS * 1000:g} ms ({cpu.samples:,} samples, each given to the innermost frame "
            f"of ours or of moto) puts ours at {cpu.sampled_share:.1%} of it, {cpu.sampled_ms:.3f} "
            "ms/message: lower, and noisy (few samples land in our code; runs of 196 to 980 messages gave "
            "0.3 to 1.7 ms), so not used.",
            "* Not counted: HTTP and TLS (moto intercepts before urllib3), Lambda's runtime and its log "
            "shipping. Counted though Lambda would not run it: botocore's event dispatch into moto's hooks.",
        ]
    else:
        lines.append(f"* **{cpu.ours_ms:.3f} ms per message: assumed** (`--cpu-ms`), not measured.")
    lines += [
        f"* Scaling to Lambda (**assumption**): this machine's core = Lambda's 1 vCPU; Lambda gives 1 vCPU "
        f"at {LAMBDA_MB_PER_VCPU:,} MB and CPU proportional to memory below ({LAMBDA_MEMORY_DOC}): "
        + ", ".join(
            f"{memory} MB ≈ {vcpu_share(memory):.2f} vCPU → {cpu.ours_ms / vcpu_share(memory):.2f} ms/msg"
            for memory in MEMORIES_MB
        )
        + ".",
        "",
        "## Per shard (one relay thread holds a shard's lease at a time, ADR 0018)",
        "",
        f"* (a) worker: a batch of 49 = Σ modeled call latencies in sequence ({batch_aws_ms():.1f} ms: "
        "1/5 Query page of 245, renew UpdateItem, BatchGetItem of 49, 5 x SendMessageBatch, finalize "
        "TransactWriteItems of 99) + 49 x CPU per message at the memory's vCPU → "
        + ", ".join(
            f"{_rate(worker_rate(memory, cpu.ours_ms))} msg/s at {memory} MB" for memory in MEMORIES_MB
        )
        + ".",
        f"* (b) partition: {PARTITION_WRITE_UNITS:,} write units/s per partition ({DYNAMODB_QUOTAS_DOC}; "
        f"{DYNAMODB_PARTITIONS_DOC}) over {SHARD_PARTITION_UNITS_PER_MESSAGE:.0f} units a message (entry "
        "Put 2 at ingest + entry Delete 2 at finalize, transactional, 1 KB-rounded) = "
        f"**{partition_rate():.0f} msg/s per shard**. Entry ids are time-ordered: every write lands at the "
        "end of the shard's key range, and a split for heat divides a partition by key range, so the "
        "new half still takes every new write; split for heat cannot lift a hot time-ordered range "
        f"({DYNAMODB_HOT_KEY_DOC}; {DYNAMODB_SPLIT_FOR_HEAT_BLOG}). Our reading of those pages: AWS "
        "publishes no figure for it.",
        "* Per shard = min(a, b). One relay invocation = min(threads x per shard, its vCPU / CPU per "
        "message) (**assumption**: threads share the invocation's CPU, no queueing modeled).",
        "",
        "## The table",
        "",
        "Rate (quotas raised) = min(shards x per shard, relays x per relay). Relays = concurrent relay "
        "invocations, each working `threads` shards (`RelayConfig.parallel_shards`: 4 as built; 1 = one "
        "shard per invocation), enough to cover every shard. Default-quota rate: ingest through the "
        "library (API Gateway's caps below), standard queue.",
        "",
        "| shards | relay MB | threads | relays | per shard | per relay | msg/s (quotas raised) | binding "
        "| msg/s at default quotas | binding at defaults | Lambda conc. |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for item in rows:
        mark = " **← 10k**" if item is chosen else ""
        lines.append(
            f"| {item.shards} | {item.memory_mb} | {item.threads} | {item.relays} | "
            f"{_rate(item.shard_rate)} | {_rate(item.relay_rate)} | {_rate(item.rate)}{mark} | "
            f"{item.binding} | {_rate(item.default_rate)} | {item.default_binding} | "
            f"{item.lambda_concurrency} |"
        )
    lines += [
        "",
        "Rows are sorted smallest first: fewer shards, then less relay memory held at once (relays x MB), "
        "then fewer relays.",
        "",
        "## 10,000 msg/s",
        "",
    ]
    if chosen is None:
        lines.append("No configuration of the table reaches 10,000 msg/s.")
    else:
        lines += [
            f"Smallest configuration: **{chosen.shards} shards, {chosen.relays} concurrent relays x "
            f"{chosen.threads} thread(s), {chosen.memory_mb} MB** → {_rate(chosen.rate)} msg/s "
            f"({chosen.binding}); at the default quotas it stops at {_rate(chosen.default_rate)} msg/s "
            f"({chosen.default_binding}). Quotas and settings to raise:",
            "",
            *(f"* {text}" for text in quotas_to_raise(chosen)),
        ]
    lines += [
        "",
        "## Other caps",
        "",
        f"* Ingest over HTTP: the stage throttle is {API_STAGE_DEFAULT_RPS} rps by default (context "
        f"`api_rate_limit`): the HTTP ingest's ceiling, on purpose; the account's {API_ACCOUNT_RPS:,} rps "
        f"per Region ({API_GATEWAY_QUOTAS_DOC}).",
        f"* Ingest writes {MESSAGE_PUT_UNITS + ENTRY_PUT_UNITS:.0f} units a message across both tables "
        f"(bench/results/latest.md); per table (ingest + relay): Outbox "
        f"{OUTBOX_TABLE_UNITS_PER_MESSAGE:.2f}, Messages {MESSAGES_TABLE_UNITS_PER_MESSAGE:.2f} → "
        f"{_rate(TABLE_WRITE_UNITS_ON_DEMAND / OUTBOX_TABLE_UNITS_PER_MESSAGE)} msg/s at the default "
        f"{TABLE_WRITE_UNITS_ON_DEMAND:,} WRU/s per table ({DYNAMODB_QUOTAS_DOC}): **no configuration "
        "reaches 10,000 msg/s without raising it.** A new table starts at "
        f"{NEW_TABLE_WARM_WRITE_UNITS:,} WRU/s ≈ {_rate(NEW_TABLE_WARM_WRITE_UNITS / 4)} msg/s "
        f"({DYNAMODB_WARM_DOC}) and ramps by doubling its previous peak ({DYNAMODB_ON_DEMAND_DOC}).",
        f"* SQS: standard queues are nearly unlimited; FIFO {SQS_FIFO_MESSAGES:,} msg/s in normal mode, "
        f"up to {SQS_FIFO_HIGH_THROUGHPUT_MESSAGES:,} in high-throughput mode in some Regions "
        f"({SQS_QUOTAS_DOC}).",
        f"* Relays: the sweep is one invocation x {RelayConfig().parallel_shards} threads (≤ "
        f"{RelayConfig().parallel_shards} shards at once, ≤ {_rate(4 * partition_rate())} msg/s); the "
        f"doorbell gives stream shards x min(shards, {DOORBELL_MAX_PARALLELIZATION}) lanes (ADR 0017). "
        "**Assumption:** under load each outbox shard is on a partition of its own and every partition "
        "has a stream shard, so lanes = shards x min(shards, 10); a small table with one stream shard "
        f"has ≤ {DOORBELL_MAX_PARALLELIZATION} lanes until it splits. Lambda: "
        f"{LAMBDA_ACCOUNT_CONCURRENCY:,} concurrent executions per account and Region "
        f"({LAMBDA_CONCURRENCY_DOC}); ingest's share is modeled as rate x "
        f"{model.LATENCY['TransactWriteItems'].base_ms + model.HANDLER_OVERHEAD_MS.value:.0f} ms "
        "(**assumption**, bench/model.py).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Model the relay's throughput (shards x relays x memory -> msg/s) with its measured "
        "CPU per message, and write the table (issue #14).",
    )
    parser.add_argument(
        "--messages", type=int, default=392, help="messages relayed for the CPU measurement (default 392)"
    )
    parser.add_argument(
        "--cpu-ms",
        type=float,
        default=None,
        help="skip the measurement and assume this many CPU ms per message (labelled as assumed)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("bench/results/throughput.md"),
        help="where to write the table (default bench/results/throughput.md)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_ms is not None:
        cpu = assumed_cpu(args.cpu_ms)
        command = f"python -m bench.throughput --cpu-ms {args.cpu_ms:g}"
    else:
        cpu = measure_cpu(args.messages)
        command = f"python -m bench.throughput --messages {args.messages}"
    text = render(cpu, command)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

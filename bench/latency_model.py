"""`python -m bench.latency_model`: modeled AWS latency of 202 -> QUEUED with the stream doorbell and with one
sweep a minute, and the monthly cost of a stack with no traffic, before and after the doorbell (issue #14,
ADR 0017).

Nothing here is measured on AWS. Each step of a path is a figure of `bench/model.py`: a published AWS
figure (with its URL), a call priced by the ADR 0012 latency model, or an assumption of ours, labeled as
such. A path's p50 is the sum of its steps' p50s and its p99 the sum of their p99s: every step at its own
p99 at once, a pessimistic reading of the tail (the steps are independent, so the real p99 of the sum is
usually lower). The model is of one message at low load: under load, records also wait behind a running
woken invocation (up to `DOORBELL_RUN_SECONDS`), which is what the mapping's iterator age measures.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

from bench import model
from bench.units import CallRecord, read_units
from outbox.core import usage
from outbox.core.settings import Settings
from relay.core import RelayConfig

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics

RESULTS: Final = Path(__file__).resolve().parent / "results"
OUTPUT_NAME: Final = "latency-model.md"
RELAY_MEMORY_MB: Final = 512
"""`outbox.cdk.construct.RELAY_MEMORY_MB`, copied: importing the construct loads the CDK (and Node). A test
keeps the two equal."""
MESSAGE_KB: Final = 1

PUBLISHED: Final = "published"
MODELED: Final = "modeled"
ASSUMED: Final = "assumption"
ARITHMETIC: Final = "arithmetic"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a message's way from the ingest commit (the 202) to the finalize commit (QUEUED)."""

    name: str
    p50_ms: float
    p99_ms: float
    basis: str
    """`published`, `modeled` (bench/model.py's call latencies), `assumption` or `arithmetic`."""
    source: str


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    steps: tuple[Step, ...]

    @property
    def p50_ms(self) -> float:
        return sum(step.p50_ms for step in self.steps)

    @property
    def p99_ms(self) -> float:
        return sum(step.p99_ms for step in self.steps)


def uniform_percentile(span_ms: float, fraction: float) -> float:
    """The `fraction` quantile of a wait uniform on [0, span): an arrival at a random moment of a period."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], not {fraction}")
    return fraction * span_ms


def call_ms(operation: str, items: int, bytes_moved: int = 0) -> float:
    """The typical latency bench/model.py gives one call (DEFAULT_LATENCY for an operation it does not
    list)."""
    record = CallRecord(
        service="",
        operation=operation,
        items=items,
        write_units=0.0,
        read_units=0.0,
        sqs_requests=0,
        bytes_moved=bytes_moved,
        failed=False,
    )
    return model.call_ms(record)


def _call_step(name: str, operation: str, items: int, bytes_moved: int = 0) -> Step:
    typical = call_ms(operation, items, bytes_moved)
    return Step(name, typical, typical * model.CALL_P99_FACTOR.value, MODELED, model.THIS_MODEL)


def _invoke_step(name: str) -> Step:
    overhead = model.INVOKE_OVERHEAD_MS.value
    p99 = overhead * model.CALL_P99_FACTOR.value
    return Step(name, overhead, p99, ASSUMED, model.INVOKE_OVERHEAD_MS.source)


def batch_steps(message_bytes: int) -> tuple[Step, ...]:
    """One claim batch of one message, as `Relay._process_batch` makes it: claim, fetch, send, finalize."""
    return (
        _call_step("claim: TransactWriteItems, 1 Update", "TransactWriteItems", 1),
        _call_step("fetch: BatchGetItem, 1 key", "BatchGetItem", 1, message_bytes),
        _call_step("send: SendMessageBatch, 1 entry", "SendMessageBatch", 1, message_bytes),
        _call_step("finalize: TransactWriteItems, 2 actions (QUEUED)", "TransactWriteItems", 2),
    )


def doorbell_route(*, message_bytes: int) -> Route:
    """The ingest commit writes the entry; its INSERT record reaches the stream; the mapping's next poll of
    that stream shard reads it and invokes the relay with it; the woken run reads the rung shard (one
    `Query`) and relays the entry in one claim batch."""
    poll_period_ms = 1000 / model.STREAM_POLLS_PER_SECOND.value
    return Route(
        "doorbell: stream -> event source mapping -> relay",
        (
            Step(
                "stream record readable after the ingest commit",
                model.STREAM_RECORD_P50_MS.value,
                model.STREAM_RECORD_P99_MS.value,
                ASSUMED,
                model.STREAM_RECORD_P50_MS.source,
            ),
            Step(
                f"wait for the mapping's next poll (uniform over {poll_period_ms:g} ms)",
                uniform_percentile(poll_period_ms, 0.50),
                uniform_percentile(poll_period_ms, 0.99),
                PUBLISHED,
                model.STREAM_POLLS_PER_SECOND.source,
            ),
            _call_step("poll: GetRecords (keys only, INSERT filter)", "GetRecords", 1),
            _invoke_step("synchronous Invoke, warm (no batching window)"),
            _call_step("read the rung shard: Query, 1 entry", "Query", 1),
            *batch_steps(message_bytes),
        ),
    )


def sweep_queries(shards: int, workers: int) -> int:
    """`Query` calls one worker of a sweep makes one after another: the shards are shared out among the
    workers, and the run claims what they carried only when all of them are done (relay/core.py)."""
    return math.ceil(shards / max(1, min(shards, workers)))


def sweep_route(*, shards: int, workers: int, schedule_seconds: int, message_bytes: int) -> Route:
    """Before the doorbell: the entry waits for the next scheduled run, which reads every shard and claims
    what it found."""
    period_ms = 1000.0 * schedule_seconds
    sequential = sweep_queries(shards, workers)
    reads = [_call_step("read the entry's shard: Query, 1 entry", "Query", 1)]
    if sequential > 1:
        empty = _call_step("", "Query", 0)
        reads.append(
            Step(
                f"the same worker's other {sequential - 1} shard(s): Query, empty",
                (sequential - 1) * empty.p50_ms,
                (sequential - 1) * empty.p99_ms,
                MODELED,
                model.THIS_MODEL,
            )
        )
    return Route(
        f"one sweep every {schedule_seconds} s (before the doorbell)",
        (
            Step(
                f"wait for the next scheduled run (arrival uniform over {schedule_seconds} s)",
                uniform_percentile(period_ms, 0.50),
                uniform_percentile(period_ms, 0.99),
                ARITHMETIC,
                "SCHEDULE_SECONDS (outbox/core/settings.py)",
            ),
            _invoke_step("EventBridge -> asynchronous Invoke, warm"),
            *reads,
            *batch_steps(message_bytes),
        ),
    )


def cold_start_ms() -> float:
    """What a cold invocation adds: Lambda's own start (assumed) and our handler's import (measured)."""
    return model.COLD_PLATFORM_MS.value + model.COLD_IMPORT_MS.value


# -- cost ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostLine:
    """Dollars per month; None where the line does not exist in that stack."""

    name: str
    before: float | None
    after: float | None
    source: str


def runs_per_month(schedule_seconds: int) -> float:
    return model.HOURS_PER_MONTH.value * 3600 / schedule_seconds


def idle_run_ms(*, shards: int, workers: int) -> float:
    """A sweep that finds nothing: the handler's own time and each worker's empty `Query`s in turn."""
    return model.HANDLER_OVERHEAD_MS.value + sweep_queries(shards, workers) * call_ms("Query", 0)


def billed_seconds(run_ms: float) -> float:
    """Lambda bills duration rounded up to the nearest millisecond."""
    return math.ceil(run_ms - 1e-9) / 1000


def duration_dollars(run_ms: float, memory_mb: int) -> float:
    return billed_seconds(run_ms) * memory_mb / 1024 * model.LAMBDA_PRICE_PER_GB_SECOND_ARM.value


def query_read_dollars() -> float:
    """One strongly consistent `Query` (the relay reads its pages consistently): the minimum unit when
    empty."""
    return read_units(0, consistent=True) * usage.PRICE_PER_READ_UNIT


def idle_costs(*, shards: int, schedule_seconds: int, memory_mb: int, run_ms: float) -> tuple[CostLine, ...]:
    runs = runs_per_month(schedule_seconds)
    requests = runs * model.LAMBDA_PRICE_PER_REQUEST.value
    duration = runs * duration_dollars(run_ms, memory_mb)
    reads = runs * shards * query_read_dollars()
    return (
        CostLine(
            f"scheduled relay invocations ({runs:,.0f} a month)", requests, requests, model.LAMBDA_PRICING
        ),
        CostLine(
            f"their duration ({math.ceil(run_ms - 1e-9)} ms billed each, {memory_mb} MB, arm64)",
            duration,
            duration,
            model.LAMBDA_PRICING,
        ),
        CostLine(
            f"the sweep's Queries ({shards} shards a run, 1 consistent read unit each, empty)",
            reads,
            reads,
            model.DYNAMODB_PRICING,
        ),
        CostLine("EventBridge schedule events", 0.0, 0.0, model.SCHEDULE_EVENT_PRICE.source),
        CostLine(
            "stream: Lambda's GetRecords polls (4 a second per stream shard), an idle stream",
            None,
            model.STREAM_READS_BY_LAMBDA_PRICE.value,
            model.STREAM_READS_BY_LAMBDA_PRICE.source,
        ),
        CostLine(
            "doorbell invocations (no records, or only records the INSERT filter drops)",
            None,
            model.FILTERED_RECORD_INVOCATIONS.value,
            model.FILTERED_RECORD_INVOCATIONS.source,
        ),
    )


def total_before(lines: Sequence[CostLine]) -> float:
    return sum(line.before for line in lines if line.before is not None)


def total_after(lines: Sequence[CostLine]) -> float:
    return sum(line.after for line in lines if line.after is not None)


class _MetricNames:
    """Stands in for Powertools' `Metrics` to list the names a run publishes."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add_metric(self, *, name: str, unit: object, value: float) -> None:
        self.names.append(name)


def idle_metric_names() -> list[str]:
    """The EMF metrics an idle run publishes (relay/handler.py `publish_metrics` on an empty summary)."""
    from relay.entries import RunSummary  # noqa: PLC0415 - the relay's handler only when asked
    from relay.handler import publish_metrics  # noqa: PLC0415

    sink = _MetricNames()
    publish_metrics(cast("Metrics", sink), RunSummary())
    return sink.names


def named_costs(*, schedule_seconds: int, metrics: int) -> tuple[CostLine, ...]:
    """CloudWatch: the same before and after but for the doorbell's alarm; kept out of the totals."""
    runs = runs_per_month(schedule_seconds)
    logs = runs * model.LOG_BYTES_PER_RUN.value / 1024**3 * model.CLOUDWATCH_LOG_GB.value
    emf = metrics * model.CLOUDWATCH_METRIC_MONTH.value
    return (
        CostLine(
            "alarm DoorbellIteratorAge (standalone stack, infra/; not the construct)",
            None,
            model.CLOUDWATCH_ALARM_MONTH.value,
            model.CLOUDWATCH_PRICING,
        ),
        CostLine(
            f"EMF custom metrics of the relay ({metrics} published by an idle run)",
            emf,
            emf,
            model.CLOUDWATCH_PRICING,
        ),
        CostLine(
            f"log ingestion ({model.LOG_BYTES_PER_RUN.value:,.0f} bytes a run, assumed)",
            logs,
            logs,
            model.CLOUDWATCH_PRICING,
        ),
    )


@dataclass(frozen=True, slots=True)
class WokenCost:
    """One woken invocation relaying one message at low load: a first pass sends it, a second finds
    nothing and ends the loop (relay/handler.py `relay_rung`)."""

    run_ms: float
    request: float
    duration: float
    reads: float

    @property
    def dollars(self) -> float:
        return self.request + self.duration + self.reads


def woken_cost(*, message_bytes: int, memory_mb: int) -> WokenCost:
    first_pass = call_ms("Query", 1) + sum(step.p50_ms for step in batch_steps(message_bytes))
    run_ms = model.HANDLER_OVERHEAD_MS.value + first_pass + call_ms("Query", 0)
    return WokenCost(
        run_ms=run_ms,
        request=model.LAMBDA_PRICE_PER_REQUEST.value,
        duration=duration_dollars(run_ms, memory_mb),
        reads=2 * query_read_dollars(),
    )


# -- report --------------------------------------------------------------------------------------------

FIGURES: Final[tuple[tuple[str, model.Figure], ...]] = (
    ("stream polls", model.STREAM_POLLS_PER_SECOND),
    ("stream record delay, p50", model.STREAM_RECORD_P50_MS),
    ("stream record delay, p99", model.STREAM_RECORD_P99_MS),
    ("Invoke overhead (typical)", model.INVOKE_OVERHEAD_MS),
    ("a call's p99", model.CALL_P99_FACTOR),
    ("relay handler's own time", model.HANDLER_OVERHEAD_MS),
    ("cold import of relay.handler", model.COLD_IMPORT_MS),
    ("Lambda's share of a cold start", model.COLD_PLATFORM_MS),
    ("cold starts", model.COLD_START_SHARE),
    ("Lambda requests", model.LAMBDA_PRICE_PER_REQUEST),
    ("Lambda duration", model.LAMBDA_PRICE_PER_GB_SECOND_ARM),
    ("a month", model.HOURS_PER_MONTH),
    ("stream reads by Lambda", model.STREAM_READS_BY_LAMBDA_PRICE),
    ("filtered or empty polls", model.FILTERED_RECORD_INVOCATIONS),
    ("schedule events", model.SCHEDULE_EVENT_PRICE),
    ("CloudWatch alarm", model.CLOUDWATCH_ALARM_MONTH),
    ("CloudWatch custom metric", model.CLOUDWATCH_METRIC_MONTH),
    ("CloudWatch Logs ingestion", model.CLOUDWATCH_LOG_GB),
    ("log bytes per run", model.LOG_BYTES_PER_RUN),
)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:,.3f} s"


def _ms(ms: float) -> str:
    return f"{ms:,.1f}"


def _dollars(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _value(figure: model.Figure) -> str:
    if figure.unit.startswith("$"):
        digits = f"{figure.value:.10f}".rstrip("0").rstrip(".")
        return f"${digits} {figure.unit.removeprefix('$').strip()}".rstrip()
    return f"{figure.value:,.10g} {figure.unit}"


def _route_table(route: Route) -> list[str]:
    lines = [
        f"**{route.name}**",
        "",
        "| step | p50 ms | p99 ms | basis | source |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    lines += [
        f"| {step.name} | {_ms(step.p50_ms)} | {_ms(step.p99_ms)} | {step.basis} | {step.source} |"
        for step in route.steps
    ]
    lines.append(f"| **202 -> QUEUED** | **{_ms(route.p50_ms)}** | **{_ms(route.p99_ms)}** | sum | |")
    return [*lines, ""]


def _cost_table(lines: Sequence[CostLine], *, totals: bool) -> list[str]:
    rows = ["| line | before | after | source |", "| --- | ---: | ---: | --- |"]
    rows += [f"| {c.name} | {_dollars(c.before)} | {_dollars(c.after)} | {c.source} |" for c in lines]
    if totals:
        rows.append(
            f"| **total, $ per month** | **{_dollars(total_before(lines))}** | "
            f"**{_dollars(total_after(lines))}** | |"
        )
    return [*rows, ""]


def markdown(
    *,
    command: str,
    shards: int,
    workers: int,
    schedule_seconds: int,
    memory_mb: int,
    message_kb: int,
    run_ms: float,
    run_ms_measured: bool,
    metrics: int,
) -> str:
    message_bytes = message_kb * 1024
    doorbell = doorbell_route(message_bytes=message_bytes)
    sweep = sweep_route(
        shards=shards, workers=workers, schedule_seconds=schedule_seconds, message_bytes=message_bytes
    )
    cold = cold_start_ms()
    costs = idle_costs(shards=shards, schedule_seconds=schedule_seconds, memory_mb=memory_mb, run_ms=run_ms)
    woken = woken_cost(message_bytes=message_bytes, memory_mb=memory_mb)
    share = model.COLD_START_SHARE.value
    lines = [
        "# Modeled AWS latency and idle cost of the doorbell",
        "",
        f"Command: `{command}` — {shards} shards, {workers} parallel workers, a sweep every "
        f"{schedule_seconds} s, relay {memory_mb} MB arm64, {message_kb} KB message, us-east-1 list prices.",
        "Modeled, not measured: every figure is from `bench/model.py`, published by AWS (URL) or an "
        "assumption (labeled). A route's p50 is the sum of its steps' p50s, its p99 the sum of their p99s "
        "(every step at its own p99 at once: pessimistic). One message at low load.",
        "",
        "## 202 -> QUEUED (ingest commit to finalize commit)",
        "",
        "| route | p50 | p99 |",
        "| --- | ---: | ---: |",
        f"| {doorbell.name} | {_seconds(doorbell.p50_ms)} | {_seconds(doorbell.p99_ms)} |",
        f"| {sweep.name} | {_seconds(sweep.p50_ms)} | {_seconds(sweep.p99_ms)} |",
        f"| doorbell, cold invocation (+{_ms(cold)} ms; under {share:.0%} of invocations) | "
        f"{_seconds(doorbell.p50_ms + cold)} | {_seconds(doorbell.p99_ms + cold)} |",
        "",
        f"The doorbell cuts p50 {sweep.p50_ms / doorbell.p50_ms:,.0f}x and p99 "
        f"{sweep.p99_ms / doorbell.p99_ms:,.0f}x. Cold starts stay out of the p99 while they are under "
        f"{share:.0%} of invocations (AWS's production figure; the sweep a minute also keeps an environment "
        "in use). With the doorbell, the sweep's route is the wait of a message whose record was lost, late "
        "or dropped. The same on the local stack, measured on moto: `bench/results/latency.md`.",
        "Modeled `queued_at - created_at` is the same figure: both are stamped before a 2-action "
        f"`TransactWriteItems` ({_ms(call_ms('TransactWriteItems', 2))} ms modeled each).",
        "",
        *_route_table(doorbell),
        *_route_table(sweep),
        "## Idle cost per month: a stack with no traffic",
        "",
        "Before: the schedule's sweeps only. After: the same, plus the Outbox table's stream and the "
        f"mapping. An idle sweep: {_ms(run_ms)} ms "
        + (
            "(given with --idle-run-ms)."
            if run_ms_measured
            else f"(modeled: the handler's own {model.HANDLER_OVERHEAD_MS.value:g} ms, assumed, and "
            f"{sweep_queries(shards, workers)} empty Queries in turn per worker)."
        ),
        "",
        *_cost_table(costs, totals=True),
        "Beside the totals (CloudWatch; list prices, before its free tier of 10 custom metrics, 10 alarms "
        "and 5 GB of logs a month):",
        "",
        *_cost_table(named_costs(schedule_seconds=schedule_seconds, metrics=metrics), totals=False),
        "Not counted: free tiers (Lambda's 1M requests and 400,000 GB-s a month cover every Lambda line "
        "above); Init duration of a new execution environment; empty tables and queue (no storage, no "
        "requests); the other alarms and the consumer's own SQS polling, the same before and after.",
        "",
        "With traffic, at low load each message wakes one invocation (a pass that sends it, a pass that "
        f"finds nothing): {_ms(woken.run_ms)} ms modeled, "
        f"${1e6 * woken.dollars:,.2f} per million messages (request ${1e6 * woken.request:,.2f}, duration "
        f"${1e6 * woken.duration:,.2f}, its two Queries' read units ${1e6 * woken.reads:,.2f}), beside the "
        "relay's DynamoDB and SQS bill per message (ADR 0012). Under load one invocation relays many.",
        "",
        "## Figures and sources",
        "",
        "| figure | value | assumption? | basis | source |",
        "| --- | ---: | --- | --- | --- |",
        *(
            f"| {name} | {_value(figure)} | {'**yes**' if figure.assumption else 'no'} | "
            f"{figure.basis} | {figure.source} |"
            for name, figure in FIGURES
        ),
        "",
        "Call latencies (typical, in-region, warm connection): `bench/model.py` LATENCY, sources in ADR "
        "0012; an operation it does not list (GetRecords) is priced at its DEFAULT_LATENCY "
        f"({model.DEFAULT_LATENCY.base_ms:g} ms).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency_model",
        description="Modeled AWS latency (p50/p99 of 202 -> QUEUED) with the stream doorbell and with one "
        "sweep a minute, and the idle cost per month before and after (issue #14, ADR 0017). Prints a "
        f"markdown table and writes it to {OUTPUT_NAME} in --output.",
    )
    parser.add_argument(
        "--shards", type=int, default=Settings.outbox_shards, help="OUTBOX_SHARDS (default %(default)s)"
    )
    parser.add_argument(
        "--schedule-seconds",
        type=int,
        default=Settings.schedule_seconds,
        help="SCHEDULE_SECONDS, the sweep's period (default %(default)s)",
    )
    parser.add_argument(
        "--memory-mb", type=int, default=RELAY_MEMORY_MB, help="the relay's memory size (default %(default)s)"
    )
    parser.add_argument(
        "--message-kb", type=int, default=MESSAGE_KB, help="message size in KB (default %(default)s)"
    )
    parser.add_argument(
        "--idle-run-ms",
        type=float,
        help="an idle sweep's duration, e.g. a deployed relay's REPORT Duration (default: modeled)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"folder for {OUTPUT_NAME}")
    args = parser.parse_args(argv)
    if min(args.shards, args.schedule_seconds, args.memory_mb, args.message_kb) < 1:
        parser.error("--shards, --schedule-seconds, --memory-mb and --message-kb must be at least 1")
    if args.idle_run_ms is not None and not args.idle_run_ms > 0:
        parser.error("--idle-run-ms must be positive")
    workers = RelayConfig().parallel_shards
    measured = args.idle_run_ms is not None
    run_ms = args.idle_run_ms if measured else idle_run_ms(shards=args.shards, workers=workers)
    command = " ".join(["python -m bench.latency_model", *(argv if argv is not None else sys.argv[1:])])
    table = markdown(
        command=command,
        shards=args.shards,
        workers=workers,
        schedule_seconds=args.schedule_seconds,
        memory_mb=args.memory_mb,
        message_kb=args.message_kb,
        run_ms=run_ms,
        run_ms_measured=measured,
        metrics=len(idle_metric_names()),
    )
    print(table)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / OUTPUT_NAME).write_text(table, encoding="utf-8")
    except OSError as exc:
        print(f"bench.latency_model: cannot write to {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

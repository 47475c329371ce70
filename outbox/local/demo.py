"""`outbox demo`: the whole promise on an embedded emulator, with no AWS account.

Starts a serialized moto server, provisions the tables and queue, accepts N messages through the real
ingest handler, relays them with faults injected into the SQS sends (so retries and rollbacks happen),
then consumes the queue through the consumer helper with redeliveries injected (outbox/local/demo_consumer.py;
`--no-consumer` reads the queue directly instead), and checks, from the tables and the queue themselves,
that nothing was lost, that every message is COMPLETED with its side effect applied exactly once and, on
a FIFO queue, that every group was received in the order its messages were accepted.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from unittest import mock

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from outbox.core.clients import dynamodb_client, reset_clients, sqs_client
from outbox.core.settings import Settings
from outbox.local.demo_consumer import (
    ConsumerStage,
    consume_until_completed,
    count_shipments,
    shipments_table_definition,
)
from outbox.local.emulator import DUMMY_CREDENTIALS, embedded_aws
from outbox.local.events import http_api_event, local_context
from outbox.local.ordering import group_order_violations
from outbox.local.queue import drain_queue, message_id_of
from outbox.ops.invoke import run_relay, use_local_function_environment
from outbox.provisioning import Resources, provision
from outbox.testing.calls import CallCounter
from outbox.testing.faults import FaultInjector, FaultKind

DEMO_GROUPS = 10
RELAY_RUN_SECONDS = 20.0
DRAIN_BUDGET_SECONDS = 300.0
SHOWN_VIOLATIONS = 20
DEMO_SETTINGS = {"MAX_BACKOFF_SECONDS": "1", "POWERTOOLS_LOG_LEVEL": "WARNING"}
"""Backoff capped at a second so that rolled-back messages come back within the demo."""


@dataclass
class DemoReport:
    accepted: int = 0
    refused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    received: int = 0
    unique_received: int = 0
    missing: int = 0
    relay: Counter[str] = field(default_factory=Counter)
    """The relay runs' counts added up (sent, retries, rolled_back, ...)."""
    relay_runs: int = 0
    ingest_calls: int = 0
    relay_calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    fifo: bool = False
    groups: int = 0
    """FIFO: how many groups had messages accepted."""
    order_violations: dict[str, list[str]] = field(default_factory=dict)
    """FIFO: the groups received out of acceptance order, with what was out of order."""
    consumer: ConsumerStage | None = None
    """The consumer stage, when it ran: messages end COMPLETED instead of QUEUED."""

    @property
    def final_status(self) -> str:
        return "COMPLETED" if self.consumer is not None else "QUEUED"

    @property
    def applied_once(self) -> bool:
        """Every accepted message's side effect applied exactly once (true without a consumer stage)."""
        if self.consumer is None:
            return True
        applied = self.consumer.applied
        return applied.get(1, 0) == self.accepted and sum(applied.values()) == applied.get(1, 0)

    @property
    def delivered(self) -> bool:
        return (
            self.accepted > 0
            and self.statuses.get(self.final_status, 0) == self.accepted
            and self.unique_received == self.accepted
            and self.missing == 0
            and self.applied_once
        )

    @property
    def ok(self) -> bool:
        return self.delivered and not self.order_violations


def run_demo(
    console: Console,
    *,
    messages: int,
    fifo: bool,
    fail_rate: float,
    seed: int,
    consumer: bool = True,
    redeliver_rate: float = 0.1,
) -> int:
    """Returns the exit code: 0 only when every accepted message was received and is COMPLETED with its
    side effect applied once (QUEUED, without the consumer stage)."""
    started = time.perf_counter()
    report = DemoReport(fifo=fifo)
    with _embedded_outbox(console, fifo=fifo) as resources:
        counter = CallCounter(dynamodb_client(), sqs_client())
        accepted = _ingest(console, report, messages=messages, fifo=fifo)
        report.ingest_calls = counter.total
        faults = FaultInjector(sqs_client(), seed=seed)
        faults.add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None, rate=fail_rate)
        faults.add("SendMessageBatch", FaultKind.SERVER_ERROR, times=None, rate=fail_rate / 2)
        _relay_until_drained(console, report, expected=len(accepted))
        faults.remove()
        report.relay_calls = counter.total - report.ingest_calls
        report.faults = Counter({kind.value: n for (_, kind), n in faults.injected.items()})
        if consumer:
            report.consumer = _consume(
                console, resources, expected=len(accepted), redeliver_rate=redeliver_rate, seed=seed
            )
        _check(report, resources, accepted)
    report.elapsed = time.perf_counter() - started
    _print_summary(console, report, fail_rate=fail_rate)
    return 0 if report.ok else 1


@contextmanager
def _embedded_outbox(console: Console, *, fifo: bool) -> Iterator[Resources]:
    with embedded_aws() as aws, mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, **DEMO_SETTINGS}):
        os.environ["AWS_ENDPOINT_URL"] = aws.endpoint_url
        reset_clients()
        try:
            resources = provision(dynamodb_client(), sqs_client(), prefix="demo", fifo=fifo)
            os.environ.update(resources.environment())
            console.print(f"[bold]Embedded AWS[/] (moto) at {aws.endpoint_url}")
            console.print(f"queue {resources.queue_url} ({'FIFO' if fifo else 'standard'})")
            Settings.from_env()  # a bad setting stops the demo here, before anything runs
            yield resources
        finally:
            reset_clients()


def _ingest(
    console: Console, report: DemoReport, *, messages: int, fifo: bool
) -> list[tuple[str, str | None]]:
    """(message_id, group) of each accepted message, in the order of acceptance (one request at a time:
    each group's order is the order its messages were accepted in)."""
    use_local_function_environment()  # no EMF line in the demo's output
    from outbox.ingest import handler as ingest  # noqa: PLC0415 - loads the handler once the environment points at moto

    ingest._settings.cache_clear()
    context = local_context(30)
    accepted: list[tuple[str, str | None]] = []
    with _progress(console) as progress:
        task = progress.add_task("POST /messages", total=messages)
        for number in range(messages):
            body: dict[str, object] = {
                "payload": {"order": number, "item": "book", "quantity": 1 + number % 5}
            }
            group = f"customer-{number % DEMO_GROUPS}" if fifo else None
            if group is not None:
                body["group_id"] = group
            event = http_api_event(
                "POST", "/messages", body=json.dumps(body), headers={"Idempotency-Key": f"demo-{number}"}
            )
            response = ingest.handler(event, context)
            if response["statusCode"] == 202:
                accepted.append((json.loads(response["body"])["message_id"], group))
            else:
                report.refused += 1
            progress.advance(task)
    report.accepted = len(accepted)
    ingest._settings.cache_clear()
    return accepted


def _relay_until_drained(console: Console, report: DemoReport, *, expected: int) -> None:
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    with _progress(console) as progress:
        task = progress.add_task("relay → SQS", total=expected)
        while report.relay["sent"] < expected and time.monotonic() < deadline:
            run = run_relay(RELAY_RUN_SECONDS)
            report.relay.update(
                {
                    "sent": run.sent,
                    "retries": run.retries,
                    "rolled_back": run.rolled_back,
                    "poisoned": run.poisoned,
                }
            )
            report.relay_runs += 1
            progress.update(task, completed=report.relay["sent"])
            if run.sent == 0:
                time.sleep(0.25)  # everything left is backing off (at most MAX_BACKOFF_SECONDS)


def _consume(
    console: Console, resources: Resources, *, expected: int, redeliver_rate: float, seed: int
) -> ConsumerStage:
    shipments = f"{resources.messages_table.removesuffix('-messages')}-shipments"
    dynamodb_client().create_table(**shipments_table_definition(shipments))
    with _progress(console) as progress:
        task = progress.add_task("consumer → COMPLETED", total=expected)
        stage = consume_until_completed(
            dynamodb=dynamodb_client(),
            sqs=sqs_client(),
            queue_url=resources.queue_url,
            messages_table=resources.messages_table,
            shipments_table=shipments,
            expected=expected,
            redeliver_rate=redeliver_rate,
            seed=seed,
            budget_seconds=DRAIN_BUDGET_SECONDS,
            on_completed=lambda: progress.advance(task),
        )
    count_shipments(dynamodb_client(), shipments, stage)
    return stage


def _check(report: DemoReport, resources: Resources, accepted: list[tuple[str, str | None]]) -> None:
    """Read the tables and the queue directly, not through the code under demonstration (with a consumer
    stage, what it received first, in order, and what is left in the queue)."""
    paginator = dynamodb_client().get_paginator("scan")
    for page in paginator.paginate(TableName=resources.messages_table, ConsistentRead=True):
        report.statuses.update(item["status"]["S"] for item in page["Items"])
    messages = drain_queue(sqs_client(), resources.queue_url)
    if report.consumer is not None:
        messages = [*report.consumer.first_receipts, *messages]
    received = [message_id_of(message) for message in messages]
    ids = {message_id for message_id, _ in accepted}
    report.received = len(received)
    report.unique_received = len(set(received) & ids)
    report.missing = len(ids - set(received))
    if report.fifo:
        report.groups = len({group for _, group in accepted if group is not None})
        report.order_violations = group_order_violations(messages, accepted)


def _print_summary(console: Console, report: DemoReport, *, fail_rate: float) -> None:
    accepted = max(report.accepted, 1)
    table = Table(title="outbox demo", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    duplicates = report.received - report.unique_received
    rows = [
        ("accepted (202)", f"{report.accepted:,}"),
        ("refused", f"{report.refused:,}"),
        (f"{report.final_status} in DynamoDB", f"{report.statuses.get(report.final_status, 0):,}"),
        ("FAILED in DynamoDB", f"{report.statuses.get('FAILED', 0):,}"),
        ("received from SQS", f"{report.received:,}"),
        ("lost", f"{report.missing:,}"),
        ("duplicates (same message_id)", f"{duplicates:,}"),
        *(_consumer_rows(report) if report.consumer is not None else []),
        *([("FIFO order per group", _group_order(report))] if report.fifo else []),
        ("faults injected into sends", _faults(report.faults, fail_rate)),
        ("send retries (tenacity)", f"{report.relay['retries']:,}"),
        ("rollbacks", f"{report.relay['rolled_back']:,}"),
        ("relay runs", f"{report.relay_runs:,}"),
        ("AWS calls per message: ingest", f"{report.ingest_calls / accepted:.2f}"),
        ("AWS calls per message: relay", f"{report.relay_calls / accepted:.2f}"),
        ("elapsed", f"{report.elapsed:.1f} s (moto; not a performance figure)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    violations = [line for lines in report.order_violations.values() for line in lines]
    for line in violations[:SHOWN_VIOLATIONS]:
        console.print(f"[red]out of order[/] {escape(line)}", highlight=False)
    if len(violations) > SHOWN_VIOLATIONS:
        console.print(f"[red]out of order[/] ... and {len(violations) - SHOWN_VIOLATIONS} more")
    if report.ok:
        in_order = " (in order per group)" if report.fifo else ""
        effects = ", its side effect applied exactly once" if report.consumer is not None else ""
        console.print(
            f"[bold green]OK[/]: every accepted message was received{in_order}, is {report.final_status}"
            f"{effects}; nothing lost."
        )
        return
    problems = [] if report.delivered else ["some accepted messages were not delivered"]
    if not report.applied_once:
        problems.append("a side effect was not applied exactly once")
    if report.order_violations:
        problems.append("a FIFO group was received out of order")
    console.print(f"[bold red]NOT OK[/]: {' and '.join(problems)} (see above).")


def _consumer_rows(report: DemoReport) -> list[tuple[str, str]]:
    stage = report.consumer
    assert stage is not None  # noqa: S101 - called only with a consumer stage
    applied = stage.applied
    twice_or_more = sum(count for times, count in applied.items() if times > 1)
    return [
        ("consumer receives", f"{stage.receives:,}"),
        (
            "redeliveries injected (timeouts / duplicate sends)",
            f"{stage.left_undeleted:,} / {stage.duplicates_sent:,}",
        ),
        ("duplicates suppressed by the helper", f"{stage.outcomes['duplicate']:,}"),
        (
            "side effects applied once / twice or more",
            f"{applied.get(1, 0):,}/{report.accepted:,} / {twice_or_more:,}",
        ),
    ]


def _group_order(report: DemoReport) -> str:
    """`10/10 groups in order`, and the groups that were not, by name."""
    text = f"{report.groups - len(report.order_violations)}/{report.groups} groups in order"
    if report.order_violations:
        text += f" (out of order: {', '.join(sorted(report.order_violations))})"
    return text


def _faults(faults: Counter[str], fail_rate: float) -> str:
    details = ", ".join(f"{count} {kind}" for kind, count in sorted(faults.items())) or "none"
    return f"{details} (rate {fail_rate:.0%})"


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress

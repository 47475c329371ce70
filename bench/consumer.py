"""`python -m bench.consumer [--messages 200] [--payload-kb 1] [--duplicates 0.1]`: the consumer helper's cost
per message beside a plain Powertools idempotency consumer doing the same work (issue #16, ADR 0019).

N messages are accepted with the library (`outbox.api.enqueue`), relayed to SQS by our relay and received
from the queue. The same deliveries (every message once, then a share of them a second time, as SQS's
at-least-once delivery does) go through Powertools' `BatchProcessor` + `process_partial_response`, in
batches as Lambda's SQS mapping hands them over, to two consumers that do the same work, one ~100-byte
"shipment" item per message in a table of their own:

1. ours: `OutboxConsumer(...).record_handler(work)`, `work` returning the shipment write, which commits
   with COMPLETED in one `TransactWriteItems`;
2. baseline: Powertools' idempotency utility (`idempotent_function`, `DynamoDBPersistenceLayer`, keyed on
   the `message_id` attribute) around the same write; the outbox message stays QUEUED.

Each consumer's DynamoDB client is billed by `bench.units.Meter` (DynamoDB's rules, from the items actually
written); prices are `bench.model`'s. The run checks that every shipment exists exactly once for both
consumers, that every outbox message ends COMPLETED with ours, and exits 1 if not. Lambda's SQS polling is
the same for both and is not billed to either.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Before the consumers are imported: Powertools loggers read the level once, and a line per message
    # would bury the table. Only as a command: importing this module (the tests) changes no environment.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from bench import model
from bench.run import Cost, _Aws, _embedded, _load, _settings, cost_of, payload_maker, progress
from bench.units import CallRecord, Meter, item_size
from outbox.consumer import Consumed, ConsumedMessage, OutboxConsumer
from outbox.consumer.processor import DEFAULT_RETENTION_DAYS, MESSAGE_ID_ATTRIBUTE
from outbox.core import usage
from outbox.core.domain import Status
from outbox.core.settings import Settings
from outbox.local.consumer import lambda_sqs_event
from outbox.local.events import local_context
from outbox.local.queue import drain_queue, message_id_of
from outbox.provisioning import provision
from outbox.testing.calls import CallCounter
from relay.core import Relay, RelayConfig

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateTypeDef

RESULTS: Final = Path(__file__).resolve().parent / "results"
PREFIX: Final = "bench-consumer"
BATCH_SIZE: Final = 10
"""Lambda's SQS mapping's default batch size for a standard queue."""
SHIPMENT_BYTES: Final = 100
"""The side effect: one item of this many bytes (DynamoDB's item size) per message."""
SHIPMENT_KEY: Final = "shipment_id"
IDEMPOTENCY_KEY_PATH: Final = f"messageAttributes.{MESSAGE_ID_ATTRIBUTE}.stringValue"
IDEMPOTENCY_EXPIRES_SECONDS: Final = 3600
"""Powertools' default `expires_after_seconds`: how long the baseline remembers a message."""
FUNCTION_SECONDS: Final = 30.0
"""Each invocation's Lambda context: the construct's consumer timeout (ADR 0019)."""
RELAY_RUN_SECONDS: Final = 60.0
RELAY_BUDGET_SECONDS: Final = 600.0
SEED: Final = 16
CAVEAT: Final = (
    "Calls and units are counted from the requests and the items as stored (bench/units.py), not from "
    "moto's ReturnConsumedCapacity (a constant); nothing here is a timing."
)


# -- the shared work: one shipment item per message ------------------------------------------------


def shipment_update(table: str, message_id: str, order: int) -> UpdateTypeDef:
    """The side effect both consumers write: an `UpdateItem` that creates the ~100-byte shipment item (billed
    as a `PutItem` of it), with `applied` counting how often it was written, so that the run can check
    "exactly once" from the table itself."""
    values: dict[str, Any] = {
        ":order": {"N": str(order)},
        ":carrier": {"S": "bench-post"},
        ":address": {"S": ""},
        ":one": {"N": "1"},
    }
    item = {
        SHIPMENT_KEY: {"S": message_id},
        "order": values[":order"],
        "carrier": values[":carrier"],
        "address": values[":address"],
        "applied": values[":one"],
    }
    values[":address"] = {"S": "x" * max(0, SHIPMENT_BYTES - item_size(item))}
    return {
        "TableName": table,
        "Key": {SHIPMENT_KEY: {"S": message_id}},
        "UpdateExpression": "SET #order = :order, carrier = :carrier, address = :address ADD applied :one",
        "ExpressionAttributeNames": {"#order": "order"},
        "ExpressionAttributeValues": values,
    }


def payload_of(payload_kb: float) -> tuple[Callable[[int], dict[str, object]], int]:
    """`bench.run.payload_maker`'s payload (a message item of `payload_kb` KB), also for a fraction of a KB:
    the next whole KB's payload, its padding cut by the difference."""
    whole = max(1, math.ceil(payload_kb))
    make, size = payload_maker(whole)
    cut = round((whole - payload_kb) * 1024)
    padding = len(str(make(0)["data"]))
    if cut > padding:
        raise ValueError(
            f"--payload-kb {payload_kb}: the smallest message item is {whole - padding / 1024:.2f} KB"
        )
    if not cut:
        return make, size

    def smaller(number: int) -> dict[str, object]:
        payload = make(number)
        return {**payload, "data": str(payload["data"])[:-cut]}

    return smaller, size - cut


def _order(body: str) -> int:
    """The work's one input from the payload (`bench.run.payload_maker`'s `order`)."""
    return int(json.loads(body)["order"])


# -- the two consumers -----------------------------------------------------------------------------


class OursConsumer:
    """`OutboxConsumer.record_handler(work)`: the shipment commits with COMPLETED, all or nothing."""

    def __init__(self, client: DynamoDBClient, *, messages_table: str, shipments_table: str) -> None:
        self._consumer = OutboxConsumer(client, messages_table=messages_table)
        self._shipments = shipments_table
        self._handler = self._consumer.record_handler(self._work)
        self.runs: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def _work(self, message: ConsumedMessage) -> list[TransactWriteItemTypeDef]:
        self.runs[message.message_id] += 1
        return [{"Update": shipment_update(self._shipments, message.message_id, _order(message.body))}]

    def _record_handler(self, record: SQSRecord) -> Consumed:
        outcome = self._handler(record)
        self.outcomes[outcome.value] += 1
        return outcome

    def handler(self, event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
        """The consumer's Lambda handler."""
        return process_partial_response(
            event=event,
            record_handler=self._record_handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )


class BaselineConsumer:
    """A plain Powertools idempotency consumer: the record handler is `idempotent_function` keyed on the
    `message_id` attribute, its record in a table of its own; the same shipment write; no status."""

    def __init__(self, client: DynamoDBClient, *, idempotency_table: str, shipments_table: str) -> None:
        self._client = client
        self._shipments = shipments_table
        self.config = IdempotencyConfig(
            event_key_jmespath=IDEMPOTENCY_KEY_PATH,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=IDEMPOTENCY_EXPIRES_SECONDS,
        )
        self.persistence = DynamoDBPersistenceLayer(table_name=idempotency_table, boto3_client=client)
        self._handler: Callable[..., Any] = idempotent_function(
            self.ship,
            data_keyword_argument="record",
            persistence_store=self.persistence,
            config=self.config,
        )
        self.runs: Counter[str] = Counter()

    def ship(self, record: SQSRecord) -> str:
        attribute = record.message_attributes[MESSAGE_ID_ATTRIBUTE]
        message_id = str(attribute.string_value if attribute else "")
        self.runs[message_id] += 1
        self._client.update_item(**shipment_update(self._shipments, message_id, _order(record.body)))
        return message_id

    def handler(self, event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
        """The consumer's Lambda handler, as Powertools documents idempotency with the batch utility."""
        self.config.register_lambda_context(context)
        return process_partial_response(
            event=event,
            record_handler=self._handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )


Handler = Callable[[dict[str, Any], "LambdaContext"], Mapping[str, Any]]


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Side:
    """One consumer's bill and what the tables show afterwards."""

    name: str
    first: Cost
    """Every message's first delivery (per message)."""
    duplicates: Cost | None
    """The repeated deliveries (per duplicate); None when there were none."""
    total: Cost
    """All deliveries, per message."""
    runs: int
    """Executions of the work function."""
    suppressed: int
    """Deliveries acknowledged without running the work."""
    batch_item_failures: int
    shipments: int
    shipments_applied_once: int
    statuses: dict[str, int]
    """Outbox message statuses right after this consumer ran."""
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per phase ("first", "duplicate"), the calls refused by their condition, by operation."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "first_delivery": self.first.as_dict(),
            "duplicate_delivery": self.duplicates.as_dict() if self.duplicates else None,
            "all_deliveries": self.total.as_dict(),
            "work_runs": self.runs,
            "duplicates_suppressed": self.suppressed,
            "batch_item_failures": self.batch_item_failures,
            "shipments": self.shipments,
            "shipments_applied_once": self.shipments_applied_once,
            "outbox_statuses": self.statuses,
            "refused_calls": self.refused,
        }


@dataclass
class ConsumerBench:
    messages: int
    payload_kb: float
    payload_bytes: int
    duplicates: int
    batch_size: int
    batches: int
    item_bytes: dict[str, int]
    ours: Side
    baseline: Side
    problems: list[str] = field(default_factory=list)

    @property
    def deliveries(self) -> int:
        return self.messages + self.duplicates

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self, command: str) -> dict[str, Any]:
        return {
            "command": command,
            "options": {
                "messages": self.messages,
                "payload_kb": self.payload_kb,
                "duplicates": self.duplicates,
                "batch_size": self.batch_size,
            },
            "deliveries": {
                "messages": self.messages,
                "duplicates": self.duplicates,
                "total": self.deliveries,
                "batches": self.batches,
            },
            "payload_bytes": self.payload_bytes,
            "item_bytes": self.item_bytes,
            "prices": {
                "write_unit": usage.PRICE_PER_WRITE_UNIT,
                "read_unit": usage.PRICE_PER_READ_UNIT,
            },
            "idempotency_expires_after_seconds": IDEMPOTENCY_EXPIRES_SECONDS,
            "message_retention_days": DEFAULT_RETENTION_DAYS,
            "ours": self.ours.as_dict(),
            "baseline": self.baseline.as_dict(),
            "checks": {"ok": self.ok, "problems": self.problems},
            "caveat": CAVEAT,
        }


# -- running ---------------------------------------------------------------------------------------


def _create_table(client: DynamoDBClient, name: str, key: str, ttl: str | None = None) -> str:
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
    )
    if ttl:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )
    return name


def _scan(client: DynamoDBClient, table: str) -> list[dict[str, Any]]:
    return [
        dict(item)
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        for item in page["Items"]
    ]


def _relay_all(aws: _Aws, settings: Settings, messages: int) -> int:
    """Our relay, run until every message is sent (unmetered: the relay has its own benchmark)."""
    relay = Relay(dynamodb=aws.dynamodb(), sqs=aws.sqs(), settings=settings, config=RelayConfig())
    sent = 0
    started = time.monotonic()
    while sent < messages and time.monotonic() - started < RELAY_BUDGET_SECONDS:
        summary = relay.run(time.monotonic() + RELAY_RUN_SECONDS)
        sent += summary.sent
        if summary.sent == 0:
            time.sleep(0.2)
    return sent


def _batches(messages: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(messages[start : start + size]) for start in range(0, len(messages), size)]


def _again(message: dict[str, Any]) -> dict[str, Any]:
    """The same SQS message delivered a second time."""
    attributes = dict(message.get("Attributes", {}))
    attributes["ApproximateReceiveCount"] = "2"
    return {**message, "ReceiptHandle": f"{message['ReceiptHandle']}-again", "Attributes": attributes}


@dataclass
class _Phase:
    records: list[CallRecord]
    cost: Cost
    failures: int

    @property
    def refused(self) -> dict[str, int]:
        return dict(sorted(Counter(r.operation for r in self.records if r.failed).items()))


def _refused(one: _Phase, two: _Phase | None) -> dict[str, dict[str, int]]:
    return {"first": one.refused, **({"duplicate": two.refused} if two else {})}


def _deliver(
    handler: Handler,
    meter: Meter,
    client: Any,
    messages: Sequence[dict[str, Any]],
    *,
    batch_size: int,
    queue_arn: str,
) -> _Phase:
    """One Lambda invocation per batch; the calls they made, billed per delivered message."""
    counter = CallCounter(client)
    failures = 0
    for batch in _batches(messages, batch_size):
        event = lambda_sqs_event(batch, queue_arn, "us-east-1")
        response = handler(event, local_context(FUNCTION_SECONDS))
        failures += len(response.get("batchItemFailures", []))
    records = meter.reset()
    return _Phase(records, cost_of(records, counter, len(messages)), failures)


def _run_side(
    name: str,
    handler: Handler,
    meter: Meter,
    client: Any,
    *,
    first: Sequence[dict[str, Any]],
    again: Sequence[dict[str, Any]],
    batch_size: int,
    queue_arn: str,
) -> tuple[_Phase, _Phase | None, Cost]:
    total_counter = CallCounter(client)
    progress(f"{name}: {len(first):,} first deliveries")
    one = _deliver(handler, meter, client, first, batch_size=batch_size, queue_arn=queue_arn)
    two = None
    if again:
        progress(f"{name}: {len(again):,} duplicate deliveries")
        two = _deliver(handler, meter, client, again, batch_size=batch_size, queue_arn=queue_arn)
    records = one.records + (two.records if two else [])
    return one, two, cost_of(records, total_counter, len(first))


def _shipments(lookup: DynamoDBClient, table: str, ids: set[str]) -> tuple[int, int]:
    """Shipment items, and how many of them belong to a message and were written exactly once."""
    items = _scan(lookup, table)
    once = sum(
        1 for item in items if item[SHIPMENT_KEY]["S"] in ids and item.get("applied", {}).get("N") == "1"
    )
    return len(items), once


def _statuses(lookup: DynamoDBClient, table: str) -> dict[str, int]:
    return dict(sorted(Counter(item["status"]["S"] for item in _scan(lookup, table)).items()))


def _mean(values: Sequence[int]) -> int:
    return round(sum(values) / len(values)) if values else 0


def run_consumer_bench(
    *, messages: int = 200, payload_kb: float = 1.0, duplicates: float = 0.1, batch_size: int = BATCH_SIZE
) -> ConsumerBench:
    """The whole run on one embedded moto server."""
    with _embedded({"POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
        lookup, lookup_sqs = aws.dynamodb(), aws.sqs()
        resources = provision(lookup, lookup_sqs, prefix=PREFIX)
        settings = _settings(resources, apart=True)
        make, payload_bytes = payload_of(payload_kb)
        progress(f"accepting {messages:,} messages of {payload_kb:g} KB (outbox.api.enqueue)")
        ids = _load(lookup, aws.s3(), settings, make, messages)
        progress("relaying them to SQS")
        sent = _relay_all(aws, settings, messages)
        received = drain_queue(lookup_sqs, resources.queue_url)
        problems: list[str] = []
        received_ids = [message_id_of(message) for message in received]
        if sent != messages or sorted(received_ids) != sorted(ids):
            problems.append(
                f"relay: {sent} sent, {len(received_ids)} received ({len(set(received_ids))} unique) "
                f"of {messages} accepted"
            )
        queued_bytes = _mean([item_size(item) for item in _scan(lookup, resources.messages_table)])
        rng = random.Random(SEED)  # noqa: S311 - a reproducible choice of duplicates, not security
        repeated = sorted(rng.sample(range(len(received)), round(duplicates * len(received))))
        again = [_again(received[index]) for index in repeated]
        queue_arn = lookup_sqs.get_queue_attributes(
            QueueUrl=resources.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        wanted = set(ids)

        # The baseline first: it must leave every outbox message as the relay left it.
        baseline_client = aws.dynamodb()
        baseline_meter = Meter(lookup)
        baseline_meter.attach(baseline_client)
        baseline = BaselineConsumer(
            baseline_client,
            idempotency_table=_create_table(lookup, f"{PREFIX}-idempotency", "id", ttl="expiration"),
            shipments_table=_create_table(lookup, f"{PREFIX}-shipments-baseline", SHIPMENT_KEY),
        )
        b_one, b_two, b_total = _run_side(
            "baseline (Powertools idempotency)",
            baseline.handler,
            baseline_meter,
            baseline_client,
            first=received,
            again=again,
            batch_size=batch_size,
            queue_arn=queue_arn,
        )
        b_shipments, b_once = _shipments(lookup, f"{PREFIX}-shipments-baseline", wanted)
        b_runs = sum(baseline.runs.values())
        baseline_side = Side(
            name="baseline",
            first=b_one.cost,
            duplicates=b_two.cost if b_two else None,
            total=b_total,
            runs=b_runs,
            suppressed=len(received) + len(again) - b_runs,
            batch_item_failures=b_one.failures + (b_two.failures if b_two else 0),
            shipments=b_shipments,
            shipments_applied_once=b_once,
            statuses=_statuses(lookup, resources.messages_table),
            refused=_refused(b_one, b_two),
        )
        idempotency_bytes = _mean([item_size(item) for item in _scan(lookup, f"{PREFIX}-idempotency")])

        ours_client = aws.dynamodb()
        ours_meter = Meter(lookup)
        ours_meter.attach(ours_client)
        ours = OursConsumer(
            ours_client,
            messages_table=resources.messages_table,
            shipments_table=_create_table(lookup, f"{PREFIX}-shipments-ours", SHIPMENT_KEY),
        )
        o_one, o_two, o_total = _run_side(
            "ours (OutboxConsumer)",
            ours.handler,
            ours_meter,
            ours_client,
            first=received,
            again=again,
            batch_size=batch_size,
            queue_arn=queue_arn,
        )
        o_shipments, o_once = _shipments(lookup, f"{PREFIX}-shipments-ours", wanted)
        ours_side = Side(
            name="ours",
            first=o_one.cost,
            duplicates=o_two.cost if o_two else None,
            total=o_total,
            runs=sum(ours.runs.values()),
            suppressed=ours.outcomes[Consumed.DUPLICATE.value],
            batch_item_failures=o_one.failures + (o_two.failures if o_two else 0),
            shipments=o_shipments,
            shipments_applied_once=o_once,
            statuses=_statuses(lookup, resources.messages_table),
            refused=_refused(o_one, o_two),
        )
        claimed = [r.bytes_moved for r in o_one.records if r.operation == "UpdateItem" and not r.failed]
        completed_bytes = _mean([item_size(item) for item in _scan(lookup, resources.messages_table)])
        shipment_bytes = _mean([item_size(item) for item in _scan(lookup, f"{PREFIX}-shipments-ours")])

    problems += _check(ours_side, baseline_side, messages=messages, duplicates=len(again))
    return ConsumerBench(
        messages=messages,
        payload_kb=payload_kb,
        payload_bytes=payload_bytes,
        duplicates=len(again),
        batch_size=batch_size,
        batches=len(_batches(received, batch_size)) + len(_batches(again, batch_size)),
        item_bytes={
            "message_queued": queued_bytes,
            "message_claimed": _mean(claimed),
            "message_completed": completed_bytes,
            "shipment": shipment_bytes,
            "idempotency_record": idempotency_bytes,
        },
        ours=ours_side,
        baseline=baseline_side,
        problems=problems,
    )


def _check(ours: Side, baseline: Side, *, messages: int, duplicates: int) -> list[str]:
    """What must hold for the figures to mean anything; each broken rule is one line."""
    problems: list[str] = []
    for side in (ours, baseline):
        if side.shipments != messages or side.shipments_applied_once != messages:
            problems.append(
                f"{side.name}: {side.shipments} shipments, {side.shipments_applied_once} written exactly "
                f"once, for {messages} messages"
            )
        if side.runs != messages or side.suppressed != duplicates:
            problems.append(
                f"{side.name}: work ran {side.runs} times and {side.suppressed} deliveries were "
                f"suppressed, for {messages} messages and {duplicates} duplicates"
            )
        if side.batch_item_failures:
            problems.append(f"{side.name}: {side.batch_item_failures} batch item failures")
        if side.first.failed_calls:
            problems.append(f"{side.name}: {side.first.failed_calls} refused calls on first deliveries")
    if baseline.statuses != {Status.QUEUED.value: messages}:
        problems.append(f"baseline: outbox statuses {baseline.statuses}, expected all {Status.QUEUED.value}")
    if ours.statuses != {Status.COMPLETED.value: messages}:
        problems.append(f"ours: outbox statuses {ours.statuses}, expected all {Status.COMPLETED.value}")
    return problems


# -- the report ------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _dollars(cost: Cost) -> float:
    """$ per million of what `cost` is per (message or duplicate): DynamoDB only."""
    return model.dollars_per_million(cost.write_units_per_message, cost.read_units_per_message, 0.0)


def markdown(bench: ConsumerBench, command: str) -> str:
    ours, base = bench.ours, bench.baseline
    n, d = bench.messages, bench.duplicates
    sizes = bench.item_bytes
    lines = [
        "# Consumer benchmark: the consumer helper beside Powertools idempotency",
        "",
        f"Command: `{command}` — {n:,} messages of {bench.payload_kb:g} KB accepted (`outbox.api.enqueue`), "
        f"relayed to SQS and received; every message delivered once and {d:,} of them ({d / n:.0%}) a "
        f"second time: {bench.deliveries:,} deliveries in {bench.batches:,} Lambda batches of up to "
        f"{bench.batch_size}, through Powertools `BatchProcessor` + `process_partial_response`. The work: "
        f"one {sizes['shipment']}-byte shipment item per message in the consumer's own table.",
        "",
        _row(["DynamoDB, per message", "ours: `OutboxConsumer`", "baseline: Powertools idempotency"]),
        _row(["---", "---:", "---:"]),
    ]

    def pair(label: str, pick: Callable[[Cost], str], *, phase: str) -> None:
        cells = []
        for side in (ours, base):
            cost = {"first": side.first, "duplicate": side.duplicates, "all": side.total}[phase]
            cells.append(pick(cost) if cost is not None else "—")
        lines.append(_row([label, *cells]))

    for phase, title in (
        ("first", "first delivery"),
        ("duplicate", "duplicate delivery (per duplicate)"),
        ("all", f"all {bench.deliveries:,} deliveries, per message"),
    ):
        pair(f"{title}: API calls", lambda c: _fmt(c.calls_per_message, 3), phase=phase)
        pair(f"{title}: write units", lambda c: _fmt(c.write_units_per_message), phase=phase)
        pair(f"{title}: read units", lambda c: _fmt(c.read_units_per_message), phase=phase)
        pair(f"{title}: $ per million", lambda c: _fmt(_dollars(c), 3), phase=phase)
    lines += [
        _row(
            [
                "status the producer reads",
                f"{_statuses_text(ours.statuses)}: consumer progress visible",
                f"{_statuses_text(base.statuses)}: no consumer status",
            ]
        ),
        _row(
            [
                "side effect atomic with the completion",
                "yes: one `TransactWriteItems` (COMPLETED + the shipment)",
                "no: the shipment's write, then the record's `UpdateItem`",
            ]
        ),
        _row(
            [
                "duplicate suppressed",
                f"yes, {ours.suppressed:,}/{d:,}, while the message lives ({DEFAULT_RETENTION_DAYS} days)",
                f"yes, {base.suppressed:,}/{d:,}, for `expires_after_seconds` "
                f"({IDEMPOTENCY_EXPIRES_SECONDS} s)",
            ]
        ),
        _row(
            [
                "shipments written exactly once",
                _check_text(ours.shipments_applied_once, n),
                _check_text(base.shipments_applied_once, n),
            ]
        ),
        _row(["table of its own", "none (the Messages table)", "the idempotency table (key `id`)"]),
        "",
        "By operation (calls, write units, read units per message; duplicates per duplicate; "
        "refused = failed on its condition). Ours: the claim is the `UpdateItem`, the completion with the "
        "shipment the `TransactWriteItems`. Baseline: the `PutItem` is Powertools' INPROGRESS record, the "
        "two `UpdateItem`s are the shipment and the record's COMPLETED.",
        "",
        _row(["consumer", "deliveries", "operation", "calls", "WRU", "RRU", "refused"]),
        _row(["---", "---", "---", "---:", "---:", "---:", "---:"]),
    ]
    for side in (ours, base):
        for label, phase_cost in (("first", side.first), ("duplicate", side.duplicates)):
            if phase_cost is None:
                continue
            for operation, calls in phase_cost.calls_by_operation.items():
                lines.append(
                    _row(
                        [
                            side.name,
                            label,
                            operation,
                            _fmt(calls / phase_cost.messages, 3),
                            _fmt(
                                phase_cost.write_units_by_operation.get(operation, 0.0) / phase_cost.messages
                            ),
                            _fmt(
                                phase_cost.read_units_by_operation.get(operation, 0.0) / phase_cost.messages
                            ),
                            f"{side.refused.get(label, {}).get(operation, 0):,}",
                        ]
                    )
                )
    lines += [
        "",
        f"Item sizes (DynamoDB's rules, bytes): message item {sizes['message_queued']:,} when QUEUED, "
        f"{sizes['message_claimed']:,} after the claim, {sizes['message_completed']:,} when COMPLETED "
        f"(payload {bench.payload_bytes:,}); shipment {sizes['shipment']}; Powertools idempotency record "
        f"{sizes['idempotency_record']}.",
        "",
        "Ours writes the message item itself twice per message (the claim, then COMPLETED inside the "
        "transaction), each billed on the whole item, payload included, so its cost follows the message "
        "size; the baseline's two writes of its own touch only its small record, whatever the payload.",
        "",
        "Billing (DynamoDB on-demand): a write is 1 write unit per started KB of the larger of the item "
        "before and after it, twice that inside `TransactWriteItems`; a write refused by its condition is "
        "billed on the item as it stands (at least 1); `ReturnValuesOnConditionCheckFailure` returns the "
        "item at no extra charge. "
        f"Prices: ${usage.PRICE_PER_WRITE_UNIT * 1e6:.3f} per million write units, "
        f"${usage.PRICE_PER_READ_UNIT * 1e6:.3f} per million read units (bench/model.py). SQS and Lambda "
        "are the same for both consumers and left out.",
        f"Caveat: {CAVEAT}",
        "",
    ]
    if bench.problems:
        lines += ["**Checks failed:**", "", *[f"- {problem}" for problem in bench.problems], ""]
    return "\n".join(lines)


def _statuses_text(statuses: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {count:,}" for status, count in statuses.items()) or "none"


def _check_text(count: int, of: int) -> str:
    return f"{count:,}/{of:,}" + (" ✓" if count == of else " ✗")


# -- the command -----------------------------------------------------------------------------------


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share between 0 and 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def _kilobytes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("a positive size")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.consumer", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--messages", type=_positive, default=200, help="messages (default 200)")
    parser.add_argument(
        "--payload-kb",
        type=_kilobytes,
        default=1.0,
        help="message item size in KB, as `python -m bench`; fractions allowed, e.g. 0.5 (default 1)",
    )
    parser.add_argument(
        "--duplicates",
        type=_share,
        default=0.1,
        help="share of the messages SQS delivers a second time (default 0.1)",
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=BATCH_SIZE, help="records per Lambda invocation (default 10)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="folder for consumer.md and consumer.json"
    )
    args = parser.parse_args(argv)
    try:
        payload_of(args.payload_kb)
    except ValueError as exc:
        parser.error(str(exc))
    command = " ".join(["python -m bench.consumer", *(argv if argv is not None else sys.argv[1:])])
    bench = run_consumer_bench(
        messages=args.messages,
        payload_kb=args.payload_kb,
        duplicates=args.duplicates,
        batch_size=args.batch_size,
    )
    table = markdown(bench, command)
    print(table)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "consumer.md").write_text(table, encoding="utf-8")
        data = bench.as_dict(command)
        (args.output / "consumer.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"bench.consumer: cannot write to {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for problem in bench.problems:
        print(f"bench.consumer: {problem}", file=sys.stderr)
    return 0 if bench.ok else 1


if __name__ == "__main__":
    sys.exit(main())

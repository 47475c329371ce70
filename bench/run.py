"""One benchmark run: for each payload size, load N messages with the library API, drain them with our
relay and with the naive one, check every message arrived, and bill every call (bench.units)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final
from unittest import mock

import boto3

from bench import model
from bench.naive import NaiveRelay
from bench.units import CallRecord, Meter, item_size, sqs_entry_bytes, totals_by_operation
from outbox.api import enqueue
from outbox.core.clients import CLIENT_CONFIG, reset_clients
from outbox.core.domain import Status
from outbox.core.settings import MAX_PAYLOAD_CEILING_BYTES, S3_MAX_PAYLOAD_BYTES, Settings
from outbox.core.validation import validate_message
from outbox.data.claim_check import is_pointer_body, pointer_attributes, pointer_body
from outbox.data.transactions import NewMessage, message_for, payload_put_item, transaction_items
from outbox.local.emulator import DUMMY_CREDENTIALS, embedded_aws
from outbox.local.events import http_api_event, local_context
from outbox.local.queue import drain_queue, message_id_of
from outbox.ops.invoke import LOCAL_FUNCTION_ENVIRONMENT
from outbox.provisioning import Resources, provision
from outbox.testing.calls import CallCounter
from relay.core import Relay, RelayConfig
from relay.leases import entries_only

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

ITEM_OVERHEAD_BYTES: Final = 424
"""Payload bytes = target item KB x 1024 - this, so that "1 KB" is the ≈ 600-byte payload of
docs/design.md §8."""
DEFAULT_PAYLOAD_KBS: Final = (1, 100, 1024)
"""A small message, a large one stored apart in the Payloads table, and a 1 MB one through S3 (ADR 0023)."""
RELAY_RUN_SECONDS: Final = 60.0
DRAIN_BUDGET_SECONDS: Final = 1800.0


@dataclass
class Cost:
    """Per-message figures of one side (ingest or one relay) from the calls it made."""

    messages: int
    calls_by_operation: dict[str, int]
    counted_calls_by_operation: dict[str, int]
    """The same calls as counted independently by `outbox.testing.calls.CallCounter` (a cross-check)."""
    write_units_by_operation: dict[str, float]
    read_units_by_operation: dict[str, float]
    sqs_requests_by_operation: dict[str, int]
    calls: int
    write_units: float
    read_units: float
    sqs_requests: int
    failed_calls: int
    modeled_ms: float
    s3_write_requests: int = 0
    """S3 requests at the PUT, COPY, POST, LIST price (the claim check's `PutObject`)."""
    s3_read_requests: int = 0
    """S3 requests at the GET and all-other price (the relay's `HeadObject`)."""

    @property
    def calls_per_message(self) -> float:
        return self.calls / self.messages

    @property
    def write_units_per_message(self) -> float:
        return self.write_units / self.messages

    @property
    def read_units_per_message(self) -> float:
        return self.read_units / self.messages

    @property
    def sqs_requests_per_message(self) -> float:
        return self.sqs_requests / self.messages

    @property
    def s3_requests_per_message(self) -> float:
        return (self.s3_write_requests + self.s3_read_requests) / self.messages

    @property
    def dollars_per_million(self) -> float:
        return model.dollars_per_million(
            self.write_units_per_message,
            self.read_units_per_message,
            self.sqs_requests_per_message,
            self.s3_write_requests / self.messages,
            self.s3_read_requests / self.messages,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "calls_per_message": self.calls_per_message,
            "write_units_per_message": self.write_units_per_message,
            "read_units_per_message": self.read_units_per_message,
            "sqs_requests_per_message": self.sqs_requests_per_message,
            "s3_requests_per_message": self.s3_requests_per_message,
            "dollars_per_million": self.dollars_per_million,
        }


def cost_of(records: Sequence[CallRecord], counter: CallCounter, messages: int) -> Cost:
    totals = totals_by_operation(records)
    return Cost(
        messages=messages,
        calls_by_operation={name: total.calls for name, total in totals.items()},
        counted_calls_by_operation=dict(sorted(counter.calls.items())),
        write_units_by_operation={name: t.write_units for name, t in totals.items() if t.write_units},
        read_units_by_operation={name: t.read_units for name, t in totals.items() if t.read_units},
        sqs_requests_by_operation={name: t.sqs_requests for name, t in totals.items() if t.sqs_requests},
        calls=sum(total.calls for total in totals.values()),
        write_units=sum(total.write_units for total in totals.values()),
        read_units=sum(total.read_units for total in totals.values()),
        sqs_requests=sum(total.sqs_requests for total in totals.values()),
        failed_calls=sum(total.failed for total in totals.values()),
        modeled_ms=model.modeled_ms(records),
        s3_write_requests=sum(total.s3_write_requests for total in totals.values()),
        s3_read_requests=sum(total.s3_read_requests for total in totals.values()),
    )


@dataclass
class Delivery:
    """Read from the tables and the queue directly, after the drain."""

    loaded: int
    received: int
    unique_received: int
    missing: int
    queued_in_table: int
    entries_left: int
    wrong_bodies: int = 0
    """Received messages whose body is not what was accepted: for an S3 payload, anything but a pointer
    (with its size attribute) to an object holding the payload; else anything but the payload itself."""

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.unique_received == self.loaded
            and self.queued_in_table == self.loaded
            and self.entries_left == 0
            and self.wrong_bodies == 0
        )


@dataclass
class RelayResult:
    name: str
    cost: Cost
    delivery: Delivery
    runs: int
    workers: int
    wall_seconds: float
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def modeled_per_worker(self) -> float:
        """Messages per second one worker would relay on AWS, by the latency model."""
        return 1000 * self.cost.messages / self.cost.modeled_ms if self.cost.modeled_ms else 0.0

    @property
    def modeled_with_parallelism(self) -> float:
        return self.modeled_per_worker * self.workers

    @property
    def moto_per_second(self) -> float:
        return self.cost.messages / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cost": self.cost.as_dict(),
            "delivery": {**asdict(self.delivery), "ok": self.delivery.ok},
            "runs": self.runs,
            "workers": self.workers,
            "wall_seconds": self.wall_seconds,
            "moto_messages_per_second": self.moto_per_second,
            "modeled_messages_per_second_per_worker": self.modeled_per_worker,
            "modeled_messages_per_second_with_parallelism": self.modeled_with_parallelism,
            "notes": self.notes,
        }


@dataclass
class Scenario:
    payload_kb: int
    payload_bytes: int
    messages: int
    message_item_bytes: int
    queued_message_item_bytes: int
    entry_item_bytes: int
    sqs_message_bytes: int
    ingest: Cost
    ingest_latency_ms: dict[str, float]
    naive_ingest: Cost
    """The naive relay's load, accepted in the layout before ADR 0023 (every payload in its message item)."""
    payload_item_bytes: int
    """The payload's own item when ours stores it apart (ADR 0023); 0 when it stays in the message item."""
    ours: RelayResult
    naive: RelayResult
    floor: model.Floor

    @property
    def through_s3(self) -> bool:
        """The payloads are S3 objects (the claim check, ADR 0023), for ours and the naive relay alike."""
        return self.floor.ingest_s3_write_requests > 0

    @property
    def floor_dollars_per_million(self) -> dict[str, float]:
        f = self.floor
        return {
            "ingest": model.dollars_per_million(f.ingest_write_units, 0.0, 0.0, f.ingest_s3_write_requests),
            "relay": model.dollars_per_million(
                f.relay_write_units, f.relay_read_units, f.relay_sqs_requests, 0.0, f.relay_s3_read_requests
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "payload_kb": self.payload_kb,
            "payload_bytes": self.payload_bytes,
            "messages": self.messages,
            "message_item_bytes": self.message_item_bytes,
            "queued_message_item_bytes": self.queued_message_item_bytes,
            "entry_item_bytes": self.entry_item_bytes,
            "sqs_message_bytes": self.sqs_message_bytes,
            "payload_item_bytes": self.payload_item_bytes,
            "through_s3": self.through_s3,
            "ingest": self.ingest.as_dict(),
            "naive_ingest": self.naive_ingest.as_dict(),
            "ingest_handler_latency_ms_on_moto": self.ingest_latency_ms,
            "ours": self.ours.as_dict(),
            "naive": self.naive.as_dict(),
            "floor": {**asdict(self.floor), "dollars_per_million": self.floor_dollars_per_million},
            "modeled_speedup_per_worker": self.ours.modeled_per_worker / self.naive.modeled_per_worker,
        }


def _put_item(items: Sequence[Any], index: int) -> dict[str, Any]:
    """The item of the `index`-th Put of an ingest transaction."""
    return dict(items[index]["Put"]["Item"])


# -- payloads --------------------------------------------------------------------------------------


def payload_maker(payload_kb: int) -> tuple[Callable[[int], dict[str, object]], int]:
    """A payload of `payload_kb` x 1024 - 424 bytes as stored (compact JSON), and that size."""
    target = payload_kb * 1024 - ITEM_OVERHEAD_BYTES

    def stored(payload: dict[str, object]) -> int:
        request = validate_message(
            payload, fifo=False, max_payload_bytes=S3_MAX_PAYLOAD_BYTES, claim_check=True
        )
        return len(request.payload_json.encode("utf-8"))

    pad = target - stored({"order": 0, "data": ""})

    def make(number: int) -> dict[str, object]:
        return {"order": number % 10, "data": "x" * pad}

    return make, stored(make(0))


# -- running ---------------------------------------------------------------------------------------


@dataclass
class _Aws:
    endpoint_url: str

    def dynamodb(self) -> DynamoDBClient:
        return boto3.session.Session().client(
            "dynamodb", endpoint_url=self.endpoint_url, config=CLIENT_CONFIG, region_name="us-east-1"
        )

    def sqs(self) -> SQSClient:
        return boto3.session.Session().client(
            "sqs", endpoint_url=self.endpoint_url, config=CLIENT_CONFIG, region_name="us-east-1"
        )

    def s3(self) -> S3Client:
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, config=CLIENT_CONFIG, region_name="us-east-1"
        )


@contextmanager
def _embedded(extra_env: dict[str, str] | None = None) -> Iterator[_Aws]:
    with embedded_aws() as aws, mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, **(extra_env or {})}):
        os.environ["AWS_ENDPOINT_URL"] = aws.endpoint_url
        reset_clients()
        try:
            yield _Aws(aws.endpoint_url)
        finally:
            reset_clients()


def through_s3(payload_bytes: int) -> bool:
    """A payload this large goes to S3 (the claim check, ADR 0023) in both layouts: no item holds it."""
    return payload_bytes > MAX_PAYLOAD_CEILING_BYTES


def _settings(resources: Resources, *, apart: bool) -> Settings:
    """Ours stores large payloads apart (ADR 0023); the naive relay reads them from the message item. With
    a payload bucket (the S3 scenario), both take payloads up to `S3_MAX_PAYLOAD_BYTES` through S3."""
    bucket = resources.payloads_bucket
    return Settings(
        messages_table=resources.messages_table,
        outbox_table=resources.outbox_table,
        queue_url=resources.queue_url,
        payloads_table=resources.payloads_table if apart else None,
        payloads_bucket=bucket,
        max_payload_bytes=S3_MAX_PAYLOAD_BYTES if bucket else MAX_PAYLOAD_CEILING_BYTES,
    )


def _load(
    client: DynamoDBClient,
    s3: S3Client,
    settings: Settings,
    make: Callable[[int], dict[str, object]],
    count: int,
) -> list[str]:
    return [
        enqueue(make(number), settings=settings, client=client, s3=s3).message_id for number in range(count)
    ]


def _check(
    lookup: DynamoDBClient,
    sqs: SQSClient,
    s3: S3Client,
    resources: Resources,
    *,
    ids: list[str],
    expected_body: Callable[[str], str],
) -> tuple[Delivery, int]:
    """Delivery as the tables and the queue show it; also the average size of a QUEUED message item.
    `expected_body(message_id)` is the payload accepted under that id."""
    queued = 0
    queued_bytes = 0
    for page in lookup.get_paginator("scan").paginate(
        TableName=resources.messages_table, ConsistentRead=True
    ):
        for item in page["Items"]:
            if item["status"]["S"] == Status.QUEUED:
                queued += 1
                queued_bytes += item_size(item)
    entries = sum(
        page["Count"]
        for page in lookup.get_paginator("scan").paginate(
            TableName=resources.outbox_table, ConsistentRead=True, **entries_only()
        )
    )
    messages = drain_queue(sqs, resources.queue_url)
    received = [message_id_of(message) for message in messages]
    wrong = sum(
        _received_body(s3, message) != expected_body(message_id_of(message))
        for message in messages
        if message_id_of(message) in ids
    )
    delivery = Delivery(
        loaded=len(ids),
        received=len(received),
        unique_received=len(set(received) & set(ids)),
        missing=len(set(ids) - set(received)),
        queued_in_table=queued,
        entries_left=entries,
        wrong_bodies=wrong,
    )
    return delivery, queued_bytes // max(queued, 1)


def _received_body(s3: S3Client, message: dict[str, Any]) -> str | None:
    """What a consumer gets from `message`: its body, or for a pointer (body and size attribute, as the
    SQS Extended Client reads it) the object's content, None when the object is missing or of another
    size than the pointer announces."""
    pointer = is_pointer_body(message["Body"], message.get("MessageAttributes", {}))
    if pointer is None:
        return str(message["Body"])
    try:
        data = s3.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return data.decode("utf-8") if len(data) == pointer.size else None


def _relay_side(
    aws: _Aws,
    lookup: DynamoDBClient,
    lookup_sqs: SQSClient,
    *,
    name: str,
    prefix: str,
    make: Callable[[int], dict[str, object]],
    messages: int,
    config: RelayConfig,
    s3_payloads: bool,
) -> tuple[RelayResult, int, Cost]:
    lookup_s3 = aws.s3()
    resources = provision(lookup, lookup_sqs, prefix=prefix, payloads_bucket=s3_payloads, s3=lookup_s3)
    settings = _settings(resources, apart=name == "ours")
    # Each layout's load billed: ours may store payloads apart, naive never; S3 payloads go to S3 in both.
    ingest_client, ingest_s3 = aws.dynamodb(), aws.s3()
    ingest_meter = Meter(lookup)
    ingest_meter.attach(ingest_client)
    ingest_meter.attach(ingest_s3)
    ingest_counter = CallCounter(ingest_client, ingest_s3)
    ids = _load(ingest_client, ingest_s3, settings, make, messages)
    ingest_cost = cost_of(ingest_meter.reset(), ingest_counter, messages)
    dynamodb, sqs, s3 = aws.dynamodb(), aws.sqs(), aws.s3()
    meter = Meter(lookup)
    meter.attach(dynamodb)
    meter.attach(sqs)
    meter.attach(s3)
    counter = CallCounter(dynamodb, sqs, s3)
    runs = 0
    notes: dict[str, int] = {}
    started = time.perf_counter()
    if name == "ours":
        relay = Relay(dynamodb=dynamodb, sqs=sqs, settings=settings, config=config, s3=lambda: s3)
        sent = 0
        while sent < messages and time.perf_counter() - started < DRAIN_BUDGET_SECONDS:
            summary = relay.run(time.monotonic() + RELAY_RUN_SECONDS)
            runs += 1
            sent += summary.sent
            for key in (
                "retries",
                "rolled_back",
                "relay_errors",
                "shards_busy",
                "finalize_failed",
                "batches",
            ):
                notes[key] = notes.get(key, 0) + int(getattr(summary, key))
            if summary.sent == 0:
                time.sleep(0.2)
        workers = max(1, min(config.parallel_shards, settings.outbox_shards))
    else:
        naive = NaiveRelay(dynamodb=dynamodb, sqs=sqs, settings=settings, s3=s3)
        sent = 0
        while sent < messages:
            naive_summary = naive.run()
            runs += 1
            sent += naive_summary.sent
            notes["claims_lost"] = notes.get("claims_lost", 0) + naive_summary.claims_lost
            notes["finalize_failed"] = notes.get("finalize_failed", 0) + naive_summary.finalize_failed
            if naive_summary.sent == 0:
                break
        workers = 1
    wall = time.perf_counter() - started
    cost = cost_of(meter.reset(), counter, messages)
    payloads = _stored_payloads(make)
    number_of = {message_id: number for number, message_id in enumerate(ids)}
    delivery, queued_bytes = _check(
        lookup,
        lookup_sqs,
        lookup_s3,
        resources,
        ids=ids,
        expected_body=lambda message_id: payloads(number_of[message_id]),
    )
    return RelayResult(name, cost, delivery, runs, workers, wall, notes), queued_bytes, ingest_cost


def _stored_payloads(make: Callable[[int], dict[str, object]]) -> Callable[[int], str]:
    """The `number`-th payload as accepted (compact JSON), built when asked: a 1 MB run would otherwise hold
    a gigabyte of them."""

    def payload(number: int) -> str:
        return validate_message(
            make(number), fifo=False, max_payload_bytes=S3_MAX_PAYLOAD_BYTES, claim_check=True
        ).payload_json

    return payload


def _handler_latency(
    *,
    lookup: DynamoDBClient,
    lookup_sqs: SQSClient,
    prefix: str,
    payload: dict[str, object],
    count: int,
    s3_payloads: bool,
    s3: S3Client,
) -> dict[str, float]:
    """p50/p99 of `outbox.ingest.handler.handler` for `count` POSTs, in-process against moto."""
    from outbox.ingest import handler as ingest  # noqa: PLC0415 - loaded once the environment points at moto

    resources = provision(lookup, lookup_sqs, prefix=prefix, payloads_bucket=s3_payloads, s3=s3)
    body = json.dumps({"payload": payload})
    timings: list[float] = []
    environment = {
        **resources.environment(),
        **LOCAL_FUNCTION_ENVIRONMENT,  # no EMF lines: stdout is the table
        "MAX_PAYLOAD_BYTES": str(S3_MAX_PAYLOAD_BYTES if s3_payloads else MAX_PAYLOAD_CEILING_BYTES),
    }
    with mock.patch.dict(os.environ, environment):
        ingest._settings.cache_clear()
        reset_clients()
        try:
            context = local_context(60)
            for _ in range(count):
                event = http_api_event("POST", "/messages", body=body)
                started = time.perf_counter()
                response = ingest.handler(event, context)
                timings.append(1000 * (time.perf_counter() - started))
                if response["statusCode"] != 202:
                    raise RuntimeError(f"ingest refused a benchmark message: {response}")
        finally:
            ingest._settings.cache_clear()
            reset_clients()
    return {
        "samples": float(count),
        "p50": model.percentile(timings, 0.50),
        "p99": model.percentile(timings, 0.99),
    }


def run_scenario(
    aws: _Aws, *, payload_kb: int, messages: int, ingest_sample: int, config: RelayConfig
) -> Scenario:
    lookup, lookup_sqs = aws.dynamodb(), aws.sqs()
    make, payload_bytes = payload_maker(payload_kb)
    s3_payloads = through_s3(payload_bytes)
    probe = Settings(
        messages_table="probe-messages",
        outbox_table="probe-outbox",
        queue_url="probe",
        payloads_table="probe-payloads",
        payloads_bucket="probe-bucket" if s3_payloads else None,
        max_payload_bytes=S3_MAX_PAYLOAD_BYTES if s3_payloads else MAX_PAYLOAD_CEILING_BYTES,
    )
    message = _accepted(make(0), probe)
    message_bytes, entry_bytes, payload_item_bytes = _layout_sizes(message)
    sqs_bytes = _sqs_bytes(message)
    progress(f"{payload_kb} KB: our relay, {messages:,} messages (load, then drain)")
    ours, queued_bytes, ingest_cost = _relay_side(
        aws,
        lookup,
        lookup_sqs,
        name="ours",
        prefix=f"b{payload_kb}k-ours",
        make=make,
        messages=messages,
        config=config,
        s3_payloads=s3_payloads,
    )
    progress(f"{payload_kb} KB: naive relay, {messages:,} messages")
    naive, _, naive_ingest = _relay_side(
        aws,
        lookup,
        lookup_sqs,
        name="naive",
        prefix=f"b{payload_kb}k-naive",
        make=make,
        messages=messages,
        config=config,
        s3_payloads=s3_payloads,
    )
    if ingest_sample:
        progress(f"{payload_kb} KB: ingest handler latency, {ingest_sample} calls")
    latency = (
        _handler_latency(
            lookup=lookup,
            lookup_sqs=lookup_sqs,
            prefix=f"b{payload_kb}k-ingest",
            payload=make(0),
            count=ingest_sample,
            s3_payloads=s3_payloads,
            s3=aws.s3(),
        )
        if ingest_sample
        else {"samples": 0.0, "p50": 0.0, "p99": 0.0}
    )
    return Scenario(
        payload_kb=payload_kb,
        payload_bytes=payload_bytes,
        messages=messages,
        message_item_bytes=message_bytes,
        queued_message_item_bytes=queued_bytes,
        entry_item_bytes=entry_bytes,
        sqs_message_bytes=sqs_bytes,
        ingest=ingest_cost,
        ingest_latency_ms=latency,
        naive_ingest=naive_ingest,
        payload_item_bytes=payload_item_bytes,
        ours=ours,
        naive=naive,
        floor=model.floor(
            message_bytes=message_bytes,
            queued_message_bytes=queued_bytes,
            entry_bytes=entry_bytes,
            sqs_bytes=sqs_bytes,
            payload_item_bytes=payload_item_bytes,
            s3_object=s3_payloads,
        ),
    )


def _accepted(payload: dict[str, object], probe: Settings) -> NewMessage:
    """Ours at ingest, as built without AWS (nothing is written)."""
    request = validate_message(
        payload, fifo=False, max_payload_bytes=probe.max_payload_bytes, claim_check=probe.claim_check
    )
    return message_for(request, settings=probe)


def _layout_sizes(message: NewMessage) -> tuple[int, int, int]:
    """The message item, the entry and the payload's own item (0 when the payload stays in the message item
    or goes to S3, ADR 0023)."""
    items = transaction_items(message, messages_table="probe-messages", outbox_table="probe-outbox")
    payload_item = payload_put_item(message)
    return (
        item_size(_put_item(items, 0)),
        item_size(_put_item(items, 1)),
        item_size(payload_item) if payload_item is not None else 0,
    )


def _sqs_bytes(message: NewMessage) -> int:
    """What SQS bills for the message's send: the payload with `message_id`, or the pointer to its S3
    object with `message_id` and the size attribute."""
    sample_id = "01J0000000000000000000000X"  # same length as a real id
    attributes: dict[str, Any] = {"message_id": {"DataType": "String", "StringValue": sample_id}}
    if message.payload_object is not None:
        body = pointer_body(message.payload_object)
        attributes.update(pointer_attributes(message.payload_object))
    else:
        body = message.request.payload_json
    return sqs_entry_bytes({"MessageBody": body, "MessageAttributes": attributes})


def progress(step: str) -> None:
    """One line on stderr per step: a run takes minutes on moto, and stdout is the table."""
    print(f"bench: {step}", file=sys.stderr, flush=True)


def run_benchmark(
    *,
    messages: int = 1000,
    payload_kbs: Sequence[int] = DEFAULT_PAYLOAD_KBS,
    ingest_sample: int = 200,
    config: RelayConfig | None = None,
) -> list[Scenario]:
    """Every scenario on one embedded moto server (each in its own tables and queue)."""
    with _embedded({"POWERTOOLS_LOG_LEVEL": "WARNING"}) as aws:
        return [
            run_scenario(
                aws,
                payload_kb=kb,
                messages=messages,
                ingest_sample=ingest_sample,
                config=config or RelayConfig(),
            )
            for kb in payload_kbs
        ]

"""Shared fixtures: dummy credentials, moto in-process, a serialized moto server, handler drivers."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest
from moto import mock_aws

from outbox import enqueue
from outbox.core.clients import dynamodb_client, reset_clients, s3_client, sqs_client
from outbox.core.settings import S3_MAX_PAYLOAD_BYTES, Settings
from outbox.ingest import handler as ingest
from outbox.local.emulator import DUMMY_CREDENTIALS, EmbeddedAws
from outbox.local.events import http_api_event, local_context
from outbox.local.queue import drain_queue
from outbox.provisioning import Resources, provision
from outbox.testing.strict import install_strict_contract
from relay.core import Relay, RelayConfig
from relay.entries import RunSummary
from relay.leases import LEASE_PARTITION_PREFIX, ShardLeases, is_lease_partition
from relay.retry import RetryPolicy

_prefixes = itertools.count()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with dummy credentials, no endpoint, no cached clients or settings."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "MESSAGES_TABLE",
        "OUTBOX_TABLE",
        "QUEUE_URL",
        "PAYLOADS_TABLE",
        "PAYLOADS_BUCKET",
        "MAX_PAYLOAD_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    reset_clients()
    ingest._settings.cache_clear()
    yield
    reset_clients()
    ingest._settings.cache_clear()


@dataclass
class Outbox:
    """Provisioned resources plus helpers that read them directly, not through the code under test."""

    resources: Resources
    settings: Settings

    def messages(self) -> list[dict[str, Any]]:
        return _scan(self.resources.messages_table)

    def entries(self) -> list[dict[str, Any]]:
        """The outbox entries, without the shard leases that share their table (ADR 0018)."""
        return [
            item for item in _scan(self.resources.outbox_table) if not is_lease_partition(item["shard"]["S"])
        ]

    def payloads(self) -> dict[str, dict[str, Any]]:
        """The Payloads table's items, by payload id (ADR 0023)."""
        table = self.resources.payloads_table
        return {item["payload_id"]["S"]: item for item in _scan(table)} if table else {}

    def objects(self) -> dict[str, bytes]:
        """The payload bucket's objects (S3 claim check, ADR 0023), by key."""
        bucket = self.resources.payloads_bucket
        if bucket is None:
            return {}
        s3 = s3_client()
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def leases(self) -> dict[str, dict[str, Any]]:
        """The shard lease items, by shard (`lease#3` → `3`)."""
        return {
            item["shard"]["S"].removeprefix(LEASE_PARTITION_PREFIX): item
            for item in _scan(self.resources.outbox_table)
            if is_lease_partition(item["shard"]["S"])
        }

    def message(self, message_id: str) -> dict[str, Any] | None:
        response = dynamodb_client().get_item(
            TableName=self.resources.messages_table,
            Key={"message_id": {"S": message_id}},
            ConsistentRead=True,
        )
        return response.get("Item")

    def counts(self) -> tuple[int, int]:
        return len(self.messages()), len(self.entries())


def one_shard(outbox: Outbox) -> Outbox:
    """The same tables with one shard: every message accepted through it lands in shard "0", and a relay
    built on it works that shard alone (a scenario of one shard and its lease)."""
    return Outbox(outbox.resources, replace(outbox.settings, outbox_shards=1))


def shard_leases(outbox: Outbox) -> ShardLeases:
    """The outbox's shard leases, as a relay of its settings takes them."""
    return ShardLeases(
        dynamodb_client(),
        outbox_table=outbox.settings.outbox_table,
        lease_seconds=outbox.settings.lease_seconds,
    )


def _scan(table: str) -> list[dict[str, Any]]:
    paginator = dynamodb_client().get_paginator("scan")
    return [
        item for page in paginator.paginate(TableName=table, ConsistentRead=True) for item in page["Items"]
    ]


def _provisioned(monkeypatch: pytest.MonkeyPatch, *, fifo: bool, claim_check: bool = False) -> Outbox:
    """Provisioned and in the environment; `claim_check`: with the payload bucket and payloads up to the
    largest `MAX_PAYLOAD_BYTES` it allows (ADR 0023)."""
    resources = provision(
        dynamodb_client(),
        sqs_client(),
        prefix=f"t{next(_prefixes)}",
        fifo=fifo,
        payloads_bucket=claim_check,
        s3=s3_client() if claim_check else None,
    )
    for name, value in resources.environment().items():
        monkeypatch.setenv(name, value)
    if claim_check:
        monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(S3_MAX_PAYLOAD_BYTES))
    return Outbox(resources, Settings.from_env())


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    """Standard queue, moto in-process."""
    with mock_aws():
        yield _provisioned(monkeypatch, fifo=False)


@pytest.fixture
def fifo_outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    with mock_aws():
        yield _provisioned(monkeypatch, fifo=True)


@pytest.fixture
def s3_outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    """Standard queue and the S3 claim check's bucket (`PAYLOADS_BUCKET`, `MAX_PAYLOAD_BYTES` at its
    largest), moto in-process."""
    with mock_aws():
        yield _provisioned(monkeypatch, fifo=False, claim_check=True)


@pytest.fixture
def s3_fifo_outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    with mock_aws():
        yield _provisioned(monkeypatch, fifo=True, claim_check=True)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[EmbeddedAws]:
    server = EmbeddedAws().start()
    yield server
    server.stop()


@pytest.fixture
def new_server_outbox(server_outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outbox]:
    """Another outbox on the same moto server (`fifo=True` for a FIFO one); the environment points at it."""
    return lambda *, fifo=False: _provisioned(monkeypatch, fifo=fifo)


@pytest.fixture
def server_outbox(moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """Standard queue on the moto server over HTTP, strict contract on both clients."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    reset_clients()
    install_strict_contract(dynamodb_client())
    install_strict_contract(sqs_client())
    return _provisioned(monkeypatch, fifo=False)


@pytest.fixture
def s3_server_outbox(moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """`server_outbox` with the S3 claim check's bucket, as `s3_outbox`."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    reset_clients()
    install_strict_contract(dynamodb_client())
    install_strict_contract(sqs_client())
    return _provisioned(monkeypatch, fifo=False, claim_check=True)


def run_outbox(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `outbox` command in a subprocess, as a user runs it (`env` is added to this environment)."""
    return subprocess.run(
        [sys.executable, "-m", "outbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        check=False,
    )


def call_ingest(
    method: str,
    path: str,
    body: object = None,
    *,
    raw_body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    **event_options: Any,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Invoke `outbox.ingest.handler.handler` with an HTTP API event; returns status, JSON body, headers."""
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    event = http_api_event(method, path, body=text, headers=headers, **event_options)
    response = ingest.handler(event, local_context())
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


class FakeClock:
    """Wall-clock time that tests move forward (leases, backoff); monotonic time stays real."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


FAST_RETRIES = RetryPolicy(attempts=3, initial_wait_seconds=0.0, max_wait_seconds=0.0)


def make_relay(outbox: Outbox, clock: FakeClock | None = None, **config: Any) -> Relay:
    """A relay with instant retries. One shard worker unless asked: in-process moto is not thread-safe
    (concurrent tests use the serialized moto server)."""
    config.setdefault("parallel_shards", 1)
    return Relay(
        dynamodb=dynamodb_client(),
        sqs=sqs_client(),
        settings=outbox.settings,
        clock=clock or FakeClock(),
        retry_policy=FAST_RETRIES,
        config=RelayConfig(**config),
    )


def run_relay(relay: Relay, seconds: float = 60.0) -> RunSummary:
    return relay.run(time.monotonic() + seconds)


def ingest_messages(outbox: Outbox, count: int, *, group: Callable[[int], str] | None = None) -> list[str]:
    """Accept `count` messages through the library API; payload {"n": i}; returns their ids in order."""
    return [
        enqueue(
            {"n": number},
            settings=outbox.settings,
            attributes={"origin": "test"},
            group_id=group(number) if group else None,
        ).message_id
        for number in range(count)
    ]


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue, deleted as read (call it only after all sending is done)."""
    return drain_queue(sqs_client(), queue_url)


@pytest.fixture
def sent_tokens(server_outbox: Outbox) -> Iterator[list[str]]:
    """The `ClientRequestToken` of every `TransactWriteItems` put on the wire, resends included. Registered
    before any injector, so it sees sends that a fault then answers."""
    tokens: list[str] = []

    def record(request: AWSPreparedRequest, **_: Any) -> None:
        body = request.body
        tokens.append(json.loads(body if isinstance(body, str | bytes) else b"{}")["ClientRequestToken"])

    events = dynamodb_client().meta.events
    events.register("before-send.dynamodb.TransactWriteItems", record)
    yield tokens
    events.unregister("before-send.dynamodb.TransactWriteItems", record)

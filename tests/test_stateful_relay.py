"""A stateful model of ingest / relay / crash (holding a shard's lease) / lease expiry / requeue against
the real code on in-process moto (issue 6). After every step: no status moved backwards, a message has an
outbox entry iff it is PENDING (or FAILED with its parked entry), nothing accepted is missing; at the end
a drain delivers all.

SQS entry failures need HTTP (FaultInjector) and in-process moto cannot take them, so the requeue rule has
FAILED messages only if a run poisons one; the poison/requeue path under faults is in the chaos runner."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from moto import mock_aws

from outbox import enqueue
from outbox.core.clients import dynamodb_client, reset_clients, sqs_client
from outbox.core.settings import Settings
from outbox.local.queue import message_id_of
from outbox.ops import admin
from outbox.provisioning import provision
from outbox.testing.faults import Crash, CrashAfter
from relay.leases import is_lease_partition
from tests.conftest import FakeClock, make_relay, receive_all

RANK = {"PENDING": 0, "FAILED": 0, "QUEUED": 1}


class RelayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        reset_clients()
        resources = provision(dynamodb_client(), sqs_client(), prefix="sm", fifo=False)
        self.settings = Settings.from_env({**resources.environment(), "MAX_BACKOFF_SECONDS": "1"})
        self.queue_url = resources.queue_url
        self.clock = FakeClock()
        self.statuses: dict[str, str] = {}
        self.received: Counter[str] = Counter()
        self.count = 0
        self.large: set[int] = set()

    def teardown(self) -> None:
        self.mock.stop()
        reset_clients()

    def _relay(self) -> object:
        outbox = type("O", (), {"settings": self.settings})()
        return make_relay(outbox, self.clock)  # type: ignore[arg-type]

    @rule(n=st.integers(1, 4), large=st.booleans())
    def ingest(self, n: int, large: bool) -> None:
        """`large`: payloads their message item cannot hold in one write unit, stored apart (ADR 0023)."""
        for _ in range(n):
            self.count += 1
            if large:
                self.large.add(self.count)
            accepted = enqueue(
                self._payload(self.count), settings=self.settings, idempotency_key=f"k{self.count}"
            )
            self.statuses[accepted.message_id] = "PENDING"

    def _payload(self, number: int) -> dict[str, object]:
        return {"n": number, "pad": "x" * (2000 if number in self.large else 0)}

    @rule()
    def replay(self) -> None:
        if self.count:
            accepted = enqueue(
                self._payload(self.count), settings=self.settings, idempotency_key=f"k{self.count}"
            )
            assert accepted.replayed

    @rule()
    def relay_run(self) -> None:
        self._relay().run(self.clock.monotonic() + 30)  # type: ignore[attr-defined]

    @precondition(lambda self: self.count > 0)
    @rule(
        step=st.sampled_from(
            [
                ("dynamodb", "UpdateItem"),  # holding the lease: after its acquire, renew or release
                ("dynamodb", "TransactWriteItems"),  # after a finalize
                ("sqs", "SendMessageBatch"),  # sent, not finalized: the one duplicate window
                ("dynamodb", "BatchGetItem"),  # renewed and loaded, not sent
            ]
        )
    )
    def relay_run_crashing(self, step: tuple[str, str]) -> None:
        service, operation = step
        client = dynamodb_client() if service == "dynamodb" else sqs_client()
        crash = CrashAfter(client, operation)
        try:
            self._relay().run(self.clock.monotonic() + 30)  # type: ignore[attr-defined]
        except Crash:
            pass
        finally:
            crash.times = 0

    @rule()
    def lease_expires(self) -> None:
        self.clock.advance(self.settings.lease_seconds + self.settings.max_backoff_seconds + 1)

    @rule()
    def requeue_failed(self) -> None:
        for message_id in list(admin.failed_message_ids(dynamodb_client(), self.settings)):
            admin.requeue(message_id, dynamodb=dynamodb_client(), settings=self.settings, actor="model")
            self.statuses[message_id] = "PENDING"

    @invariant()
    def statuses_only_move_forward_and_entries_match(self) -> None:
        messages = _scan(self.settings.messages_table)
        entries = _entries(self.settings.outbox_table)
        current = {item["message_id"]["S"]: item["status"]["S"] for item in messages}
        assert set(self.statuses) <= set(current), "an accepted message is missing"
        for message_id, before in self.statuses.items():
            after = current[message_id]
            assert RANK[after] >= RANK[before], f"{message_id}: {before} -> {after}"
            self.statuses[message_id] = after
        with_entry = Counter(item["message_id"]["S"] for item in entries)
        assert max(with_entry.values(), default=0) <= 1, "two entries for one message"
        parked = {item["message_id"]["S"] for item in entries if item.get("state", {}).get("S") == "PARKED"}
        for message_id, status in current.items():
            if status == "PENDING":
                assert with_entry[message_id] == 1, f"PENDING without entry: {message_id}"
            elif status == "QUEUED":
                assert with_entry[message_id] == 0, f"QUEUED with an entry left: {message_id}"
            else:
                assert message_id in parked or with_entry[message_id] == 0

    def check_final_drain(self) -> None:
        self.clock.advance(3600)
        for _ in range(5):
            self._relay().run(self.clock.monotonic() + 30)  # type: ignore[attr-defined]
        current = {
            item["message_id"]["S"]: item["status"]["S"] for item in _scan(self.settings.messages_table)
        }
        assert all(current[m] == "QUEUED" for m in self.statuses), current
        assert _entries(self.settings.outbox_table) == []
        messages = receive_all(self.queue_url)
        received = Counter(message_id_of(m) for m in messages)
        assert set(received) == set(self.statuses)
        for message in messages:  # whole, wherever the payload was kept
            body = json.loads(message["Body"])
            assert body == self._payload(body["n"])


def _scan(table: str) -> list[dict]:  # type: ignore[type-arg]
    return dynamodb_client().scan(TableName=table, ConsistentRead=True)["Items"]


def _entries(table: str) -> list[dict]:  # type: ignore[type-arg]
    """The outbox entries, without the shard leases in their table."""
    return [item for item in _scan(table) if not is_lease_partition(item["shard"]["S"])]


class DrainingMachine(RelayMachine):
    def teardown(self) -> None:
        try:
            self.check_final_drain()
        finally:
            super().teardown()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    return


TestRelayModel = DrainingMachine.TestCase
TestRelayModel.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

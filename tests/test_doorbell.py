"""The doorbell's runtime half (relay/doorbell.py, relay/handler.py): a DynamoDB stream batch names the
shards to relay, and the invocation works them until a pass sends nothing more; the schedule sweeps all.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

import relay.handler
from outbox.api import enqueue
from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.schema import OUTBOX_PARTITION_KEY
from outbox.local.queue import message_id_of
from relay.core import Relay, RelayConfig
from relay.doorbell import shards_rung
from relay.handler import relay_rung
from tests.conftest import FAST_RETRIES, FakeClock, Outbox, ingest_messages, receive_all


def _record(event_name: str, shard: str, source: str = "aws:dynamodb") -> dict[str, Any]:
    return {
        "eventSource": source,
        "eventName": event_name,
        "dynamodb": {"Keys": {OUTBOX_PARTITION_KEY: {"S": shard}, "entry_id": {"S": f"e-{shard}"}}},
    }


def test_only_inserts_ring_and_each_shard_once() -> None:
    event = {
        "Records": [
            _record("INSERT", "3"),
            _record("INSERT", "3"),
            _record("MODIFY", "5"),
            _record("REMOVE", "6"),
            _record("INSERT", "1"),
        ]
    }
    assert shards_rung(event) == {"1", "3"}


def test_a_batch_of_the_relays_own_writes_rings_no_shard() -> None:
    assert shards_rung({"Records": [_record("REMOVE", "2"), _record("MODIFY", "4")]}) == frozenset()


def test_a_shard_leases_own_first_write_rings_no_shard() -> None:
    """A lease item (partition `lease#n`, ADR 0018) is inserted once per shard: it is no entry."""
    assert shards_rung({"Records": [_record("INSERT", "lease#3"), _record("INSERT", "2")]}) == {"2"}


def test_anything_but_a_stream_batch_is_a_sweep() -> None:
    assert shards_rung({"source": "aws.events", "detail-type": "Scheduled Event"}) is None
    assert shards_rung({}) is None
    assert shards_rung({"Records": []}) is None
    assert shards_rung({"Records": [_record("INSERT", "1", source="aws:sqs")]}) is None


def _relay(outbox: Outbox) -> Relay:
    return Relay(
        dynamodb=dynamodb_client(),
        sqs=sqs_client(),
        settings=outbox.settings,
        clock=FakeClock(),
        retry_policy=FAST_RETRIES,
        config=RelayConfig(parallel_shards=1),
    )


def _shard_of(outbox: Outbox, message_id: str) -> str:
    return next(
        item[OUTBOX_PARTITION_KEY]["S"] for item in outbox.entries() if item["message_id"]["S"] == message_id
    )


def test_a_rung_shard_is_relayed_and_the_others_wait_for_the_sweep(outbox: Outbox) -> None:
    ids = ingest_messages(outbox, 40)
    shard = _shard_of(outbox, ids[0])
    in_shard = {message_id for message_id in ids if _shard_of(outbox, message_id) == shard}

    summary = relay_rung(_relay(outbox), time.monotonic() + 60, frozenset({shard, "no-such-shard"}))

    assert summary.sent == len(in_shard)
    assert {message_id_of(m) for m in receive_all(outbox.resources.queue_url)} == in_shard
    assert {item[OUTBOX_PARTITION_KEY]["S"] for item in outbox.entries()} == (
        {_shard_of(outbox, message_id) for message_id in set(ids) - in_shard}
    )
    assert len(outbox.entries()) == len(ids) - len(in_shard)

    sweep = relay_rung(_relay(outbox), time.monotonic() + 60, None)
    assert sweep.sent == len(ids) - len(in_shard)
    assert outbox.entries() == []


def test_an_entry_written_during_a_pass_is_taken_by_the_next_pass(outbox: Outbox) -> None:
    """The rung invocation loops: an entry that lands after its shard's page was read goes out in the
    same invocation, not a minute later with the sweep."""
    one_shard = replace(outbox, settings=replace(outbox.settings, outbox_shards=1))
    ids = [enqueue({"n": n}, settings=one_shard.settings).message_id for n in range(3)]
    relay = _relay(one_shard)
    late: list[str] = []

    def write_one_more(**_: Any) -> None:
        if not late:
            late.append(enqueue({"late": True}, settings=one_shard.settings).message_id)

    events = relay._sender._client.meta.events
    events.register("before-call.sqs.SendMessageBatch", write_one_more)
    try:
        summary = relay_rung(relay, time.monotonic() + 60, frozenset({"0"}))
    finally:
        events.unregister("before-call.sqs.SendMessageBatch", write_one_more)

    assert summary.sent == 4
    assert outbox.entries() == []
    received = Counter(message_id_of(m) for m in receive_all(outbox.resources.queue_url))
    assert received == Counter([*ids, *late])


def test_a_rung_invocation_stops_after_its_own_budget(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A woken run is bounded by DOORBELL_RUN_SECONDS, not by the function's timeout, so the records
    behind its batch do not wait for a whole backlog; the sweep takes the rest with the full deadline."""
    ids = ingest_messages(outbox, 10)
    monkeypatch.setattr(relay.handler, "DOORBELL_RUN_SECONDS", 0.0)
    shards = frozenset(_shard_of(outbox, message_id) for message_id in ids)

    woken = relay_rung(_relay(outbox), time.monotonic() + 60, shards)
    assert woken.sent == 0
    assert len(outbox.entries()) == len(ids)

    sweep = relay_rung(_relay(outbox), time.monotonic() + 60, None)
    assert sweep.sent == len(ids)
    assert outbox.entries() == []

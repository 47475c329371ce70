"""The benchmark at small N: its counts must be internally consistent (never its timings)."""

from __future__ import annotations

import math

import pytest

from bench import model
from bench.report import markdown
from bench.run import Cost, Scenario, run_benchmark
from bench.units import item_size, number_size, read_units, sqs_requests, value_size, write_units
from relay.core import RelayConfig

MESSAGES = 60


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    (result,) = run_benchmark(messages=MESSAGES, payload_kbs=(1,), ingest_sample=10)
    return result


def _consistent(cost: Cost) -> None:
    assert cost.calls == sum(cost.calls_by_operation.values())
    assert cost.calls_by_operation == cost.counted_calls_by_operation  # the meter saw what CallCounter saw
    assert math.isclose(cost.write_units, sum(cost.write_units_by_operation.values()))
    assert math.isclose(cost.read_units, sum(cost.read_units_by_operation.values()))
    assert cost.sqs_requests == sum(cost.sqs_requests_by_operation.values())
    assert cost.failed_calls == 0
    assert math.isclose(
        cost.dollars_per_million,
        cost.write_units_per_message * 0.625
        + cost.read_units_per_message * 0.125
        + cost.sqs_requests_per_message * 0.40,
    )


def test_every_message_is_delivered_by_both_relays(scenario: Scenario) -> None:
    for result in (scenario.ours, scenario.naive):
        delivery = result.delivery
        assert delivery.loaded == MESSAGES
        assert delivery.unique_received == MESSAGES
        assert delivery.missing == 0
        assert delivery.queued_in_table == MESSAGES
        assert delivery.entries_left == 0
        assert delivery.ok


def test_calls_and_units_add_up_across_operations(scenario: Scenario) -> None:
    for cost in (scenario.ingest, scenario.ours.cost, scenario.naive.cost):
        assert cost.messages == MESSAGES
        _consistent(cost)


def test_ingest_is_one_two_item_transaction_per_message(scenario: Scenario) -> None:
    assert scenario.ingest.calls_by_operation == {"TransactWriteItems": MESSAGES}
    assert scenario.message_item_bytes <= 1024
    assert scenario.queued_message_item_bytes <= 1024  # "a 1 KB message" still fits after finalize
    assert scenario.ingest.write_units_per_message == 4  # 2 x (1 message + 1 entry)
    assert scenario.ingest.write_units_per_message == scenario.floor.ingest_write_units


def test_naive_relay_makes_the_calls_it_is_meant_to(scenario: Scenario) -> None:
    calls = scenario.naive.cost.calls_by_operation
    for operation in ("UpdateItem", "GetItem", "SendMessage", "TransactWriteItems"):
        assert calls[operation] == MESSAGES
    assert calls["Query"] >= MESSAGES
    assert 4 <= scenario.naive.cost.calls_per_message <= 6


def test_ours_uses_fewer_calls_and_requests_than_naive(scenario: Scenario) -> None:
    ours, naive = scenario.ours.cost, scenario.naive.cost
    assert ours.calls_per_message < naive.calls_per_message
    assert ours.sqs_requests_per_message < naive.sqs_requests_per_message
    assert ours.calls_by_operation["SendMessageBatch"] >= MESSAGES / 10
    assert "SendMessage" not in ours.calls_by_operation
    # a 2-item finalize per message (4 write units for a 1 KB message) and no claim (ADR 0018): on top, the
    # shard leases' acquire, renew and release and the finalize's check, a few units per shard and batch
    # (60 messages over 8 shards here: ≈ 0.7 a message; ≈ 0.1 at 1,000)
    assert 4 < ours.write_units_per_message < naive.write_units_per_message == 5
    assert ours.write_units_per_message >= scenario.floor.relay_write_units
    assert ours.calls_per_message >= scenario.floor.relay_calls


def test_modeled_time_is_the_sum_of_the_modeled_calls(scenario: Scenario) -> None:
    assert scenario.ours.cost.modeled_ms > 0
    assert scenario.ours.workers == min(RelayConfig().parallel_shards, 8)
    assert scenario.naive.workers == 1
    assert math.isclose(
        scenario.ours.modeled_with_parallelism, scenario.ours.modeled_per_worker * scenario.ours.workers
    )


def test_report_renders(scenario: Scenario) -> None:
    table = markdown([scenario], imports=None, asset=None, command="python -m bench", config=RelayConfig())
    assert "relay AWS calls" in table
    assert "ours 1 KB" in table


def test_billing_rules() -> None:
    assert number_size("0") == 2
    assert number_size("1700000000000") == 2
    assert number_size("12345") == 4
    assert value_size({"M": {"a": {"S": "xy"}}}) == 3 + 1 + 2 + 1
    assert item_size({"id": {"S": "abc"}, "n": {"N": "10"}}) == 2 + 3 + 1 + 2
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(0) == 1
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=False) == 1
    assert sqs_requests(65_536) == 1
    assert sqs_requests(65_537) == 2
    assert model.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0

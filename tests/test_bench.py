"""The benchmark at small N: its counts must be internally consistent (never its timings)."""

from __future__ import annotations

import math

import boto3
import pytest
from moto import mock_aws

from bench import model
from bench.report import markdown
from bench.run import Cost, Scenario, _received_body, run_benchmark
from bench.units import item_size, number_size, read_units, sqs_requests, value_size, write_units
from outbox.data.claim_check import PayloadObject, pointer_attributes, pointer_body
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


# -- the S3 claim check's scenario (ADR 0023) --------------------------------------------------------

S3_MESSAGES = 12


@pytest.fixture(scope="module")
def s3_scenario() -> Scenario:
    (result,) = run_benchmark(messages=S3_MESSAGES, payload_kbs=(1024,), ingest_sample=2)
    return result


def test_a_1_mb_payload_goes_through_s3_and_both_relays_send_pointers_to_it(s3_scenario: Scenario) -> None:
    assert s3_scenario.through_s3
    assert s3_scenario.payload_bytes > 1_000_000
    for result in (s3_scenario.ours, s3_scenario.naive):
        # wrong_bodies == 0: every message received is a pointer whose object holds the accepted payload
        assert result.delivery.ok, result.delivery
        assert result.delivery.unique_received == S3_MESSAGES
    assert s3_scenario.sqs_message_bytes < 1024  # a pointer, not the megabyte
    assert s3_scenario.message_item_bytes < 1024
    assert s3_scenario.payload_item_bytes == 0


def test_s3_requests_are_counted_and_priced(s3_scenario: Scenario) -> None:
    ingest, ours, naive = s3_scenario.ingest, s3_scenario.ours.cost, s3_scenario.naive.cost
    assert ingest.calls_by_operation == {"PutObject": S3_MESSAGES, "TransactWriteItems": S3_MESSAGES}
    assert (ingest.s3_write_requests, ingest.s3_read_requests) == (S3_MESSAGES, 0)
    assert ingest.write_units_per_message == s3_scenario.floor.ingest_write_units == 4
    for relay in (ours, naive):
        assert relay.calls_by_operation["HeadObject"] == S3_MESSAGES
        assert (relay.s3_write_requests, relay.s3_read_requests) == (0, S3_MESSAGES)
        assert relay.calls_by_operation == relay.counted_calls_by_operation
    assert math.isclose(ingest.dollars_per_million, 4 * 0.625 + 5.0)  # 4 WRU and one PUT
    assert math.isclose(
        ours.dollars_per_million,
        ours.write_units_per_message * 0.625
        + ours.read_units_per_message * 0.125
        + ours.sqs_requests_per_message * 0.40
        + 0.40,  # one HEAD
    )
    assert math.isclose(s3_scenario.floor_dollars_per_million["ingest"], 4 * 0.625 + 5.0)


def test_the_report_names_the_s3_scenario_and_its_requests(s3_scenario: Scenario) -> None:
    table = markdown([s3_scenario], imports=None, asset=None, command="python -m bench", config=RelayConfig())
    assert "ours 1024 KB (S3)" in table
    assert "relay S3 requests (HEAD)" in table
    assert "| ingest 1024 KB (S3) | PutObject | 1.000 | 0.00 | 0.00 | 0.000 | 1.000 |" in table


def test_a_pointer_to_a_missing_or_resized_object_is_a_wrong_body() -> None:
    """The delivery check can fail: what a consumer would get from a pointer is read back from S3."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-bucket")
        s3.put_object(Bucket="bench-bucket", Key="payloads/1", Body=b'{"a":1}')
        obj = PayloadObject("bench-bucket", "payloads/1", 7)

        def message(pointed: PayloadObject) -> dict[str, object]:
            return {
                "Body": pointer_body(pointed),
                "MessageAttributes": {"message_id": {"StringValue": "m"}, **pointer_attributes(pointed)},
            }

        assert _received_body(s3, message(obj)) == '{"a":1}'
        assert _received_body(s3, message(PayloadObject("bench-bucket", "payloads/1", 8))) is None  # resized
        assert _received_body(s3, message(PayloadObject("bench-bucket", "payloads/2", 7))) is None  # missing
        assert _received_body(s3, {"Body": "[]", "MessageAttributes": {}}) == "[]"  # not a pointer

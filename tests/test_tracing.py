"""Trace context from the POST to the consumer (outbox/core/tracing.py, ADR 0021): a W3C `traceparent` or an
X-Ray header is stored with the message as one X-Ray trace header; malformed ones are ignored."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from hypothesis import given
from hypothesis import strategies as st

from outbox.api import enqueue
from outbox.consumer import ConsumedMessage, OutboxConsumer
from outbox.core.clients import dynamodb_client
from outbox.core.tracing import request_trace, traceparent_of, valid_xray_header, xray_from_traceparent
from outbox.local.consumer import lambda_sqs_event
from tests.conftest import Outbox, call_ingest, make_relay, receive_all, run_relay

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
XRAY = "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
LAMBDA_XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0"


def test_a_traceparent_is_the_same_trace_written_for_xray() -> None:
    assert xray_from_traceparent(TRACEPARENT) == XRAY
    assert traceparent_of(XRAY) == TRACEPARENT
    assert xray_from_traceparent(TRACEPARENT.replace("-01", "-00")) == XRAY.replace("Sampled=1", "Sampled=0")


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; drop table",
    ],
)
def test_a_malformed_traceparent_is_ignored(malformed: str) -> None:
    assert xray_from_traceparent(malformed) is None


@given(
    trace=st.text("0123456789abcdef", min_size=32, max_size=32),
    span=st.text("0123456789abcdef", min_size=16, max_size=16),
    sampled=st.booleans(),
)
def test_every_valid_traceparent_survives_the_round_trip(trace: str, span: str, sampled: bool) -> None:
    traceparent = f"00-{trace}-{span}-{'01' if sampled else '00'}"
    header = xray_from_traceparent(traceparent)
    if trace == "0" * 32 or span == "0" * 16:
        assert header is None
    else:
        assert header is not None
        assert traceparent_of(header) == traceparent


def test_the_request_trace_prefers_the_functions_own_then_the_headers() -> None:
    headers = {"x-amzn-trace-id": XRAY, "traceparent": TRACEPARENT}
    assert request_trace(headers, {"_X_AMZN_TRACE_ID": LAMBDA_XRAY}) == LAMBDA_XRAY
    assert request_trace(headers, {}) == XRAY
    assert request_trace({"traceparent": TRACEPARENT}, {}) == XRAY
    assert request_trace({"x-amzn-trace-id": "Root=nonsense", "traceparent": "garbage"}, {}) is None
    assert valid_xray_header("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;" + "x" * 300) is None


def test_a_post_stores_its_trace_and_a_replay_under_another_trace_is_still_a_replay(outbox: Outbox) -> None:
    headers = {"traceparent": TRACEPARENT, "idempotency-key": "k-1"}
    status, body, _ = call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=headers)
    assert status == 202
    stored = outbox.message(body["message_id"])
    assert stored is not None
    assert stored["trace_header"]["S"] == XRAY
    other = {
        "traceparent": TRACEPARENT.replace("00f067aa0ba902b7", "1111111111111111"),
        "idempotency-key": "k-1",
    }
    again, replayed, _ = call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=other)
    assert (again, replayed["message_id"]) == (200, body["message_id"])
    status, shown, _ = call_ingest("GET", f"/messages/{body['message_id']}")
    assert (status, shown["trace_header"]) == (200, XRAY)


def test_a_post_with_a_malformed_trace_is_accepted_without_one(outbox: Outbox) -> None:
    status, body, _ = call_ingest("POST", "/messages", {"payload": {}}, headers={"traceparent": "garbage"})
    assert status == 202
    stored = outbox.message(body["message_id"])
    assert stored is not None
    assert "trace_header" not in stored


def test_the_library_continues_the_lambda_invocations_trace(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", LAMBDA_XRAY)
    accepted = enqueue({"n": 1}, settings=outbox.settings)
    stored = outbox.message(accepted.message_id)
    assert stored is not None
    assert stored["trace_header"]["S"] == LAMBDA_XRAY


def test_the_consumer_gets_the_trace_sqs_carried(outbox: Outbox) -> None:
    accepted = enqueue({"n": 1}, settings=outbox.settings, trace_header=XRAY)
    record = SQSRecord(
        {
            "messageId": "m-1",
            "body": '{"n":1}',
            "attributes": {"AWSTraceHeader": XRAY, "ApproximateReceiveCount": "1"},
            "messageAttributes": {"message_id": {"stringValue": accepted.message_id, "dataType": "String"}},
        }
    )
    seen: list[ConsumedMessage] = []
    consumer = OutboxConsumer(dynamodb_client(), messages_table=outbox.settings.messages_table)
    consumer.consume(record, seen.append)  # type: ignore[arg-type]
    (message,) = seen
    assert (message.trace_header, message.traceparent) == (XRAY, TRACEPARENT)


@pytest.mark.server
def test_a_consumer_receives_the_trace_the_post_carried(server_outbox: Outbox) -> None:
    """End to end on the moto server: POST with a `traceparent`, the relay sends it as `AWSTraceHeader`,
    the consumer helper hands it to the consumer's function."""
    status, body, _ = call_ingest(
        "POST", "/messages", {"payload": {"n": 1}}, headers={"traceparent": TRACEPARENT}
    )
    assert status == 202
    assert run_relay(make_relay(server_outbox)).sent == 1
    (received,) = receive_all(server_outbox.settings.queue_url)
    assert received["Attributes"]["AWSTraceHeader"] == XRAY
    (record,) = lambda_sqs_event([received], "arn", "us-east-1")["Records"]
    seen: list[ConsumedMessage] = []
    consumer = OutboxConsumer(dynamodb_client(), messages_table=server_outbox.settings.messages_table)
    consumer.consume(SQSRecord(record), seen.append)  # type: ignore[arg-type]
    (message,) = seen
    assert (message.message_id, message.traceparent) == (body["message_id"], TRACEPARENT)

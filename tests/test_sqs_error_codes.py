"""SQS error codes in both spellings: real SQS's (`AWS.SimpleQueueService.BatchRequestTooLong`, which
botocore reports from the `x-amzn-query-error` header) and the bare modeled name.

A malformed batch read as "unknown" is rolled back uncounted and sent the same way on every run, for ever;
these tests hold the relay to splitting it and poisoning the one message no batch can carry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from outbox.core.clients import sqs_client
from outbox.core.domain import EntryState, Status
from outbox.core.sqs_errors import QUERY_ERROR_CODES, query_error_code, sqs_error_code
from outbox.local.queue import message_id_of
from outbox.testing.faults import FaultInjector, FaultKind
from outbox.testing.strict import install_strict_contract
from relay.entries import Entry
from relay.sender import MAX_BATCH_BYTES, Outcome, Outgoing, Sender
from tests.conftest import (
    FAST_RETRIES,
    Outbox,
    ingest_messages,
    make_relay,
    one_shard,
    receive_all,
    run_relay,
)


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "SendMessageBatch")


@pytest.mark.parametrize(("name", "wire"), QUERY_ERROR_CODES.items(), ids=QUERY_ERROR_CODES.keys())
def test_both_spellings_name_the_same_error(name: str, wire: str) -> None:
    assert sqs_error_code(_error(wire)) == name
    assert sqs_error_code(_error(name)) == name
    assert query_error_code(name) == wire


def test_codes_spelled_one_way_pass_through_and_unknown_prefixes_are_dropped() -> None:
    assert sqs_error_code(_error("InvalidParameterValue")) == "InvalidParameterValue"
    assert sqs_error_code(_error("AWS.SimpleQueueService.SomethingNew")) == "SomethingNew"
    assert sqs_error_code(ClientError({"Error": {}}, "SendMessageBatch")) == ""
    assert query_error_code("RequestThrottled") == "RequestThrottled"


def test_botocore_reports_real_sqs_errors_by_their_query_code() -> None:
    """The premise, pinned: a JSON answer from SQS carries the modeled name in `__type` and the old query
    code in `x-amzn-query-error`; botocore's `Error.Code` is the latter."""
    output = botocore.session.get_session().get_service_model("sqs").operation_model("SendMessageBatch")
    assert output.output_shape is not None
    body = {"__type": "com.amazonaws.sqs#BatchRequestTooLong", "message": "Batch requests cannot be longer"}
    parsed = create_parser("json").parse(
        {
            "status_code": 400,
            "headers": {"x-amzn-query-error": "AWS.SimpleQueueService.BatchRequestTooLong;Sender"},
            "body": json.dumps(body).encode(),
        },
        output.output_shape,
    )
    assert parsed["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert sqs_error_code(ClientError(parsed, "SendMessageBatch")) == "BatchRequestTooLong"


@pytest.fixture
def strict_sqs(outbox: Outbox) -> Iterator[Outbox]:
    remove = install_strict_contract(sqs_client())
    yield outbox
    remove()


def test_the_strict_hook_answers_malformed_batches_as_real_sqs_spells_them(strict_sqs: Outbox) -> None:
    url = strict_sqs.resources.queue_url
    with pytest.raises(ClientError) as caught:
        sqs_client().send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}] * 2)
    error = caught.value.response["Error"]
    assert error["Code"] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert error.get("QueryErrorCode") == "BatchEntryIdsNotDistinct"
    with pytest.raises(ClientError) as caught:
        sqs_client().send_message_batch(QueueUrl=url, Entries=[{"Id": "0", "MessageBody": "a\x00b"}])
    assert caught.value.response["Error"]["Code"] == "InvalidMessageContents"  # one spelling only


def _outgoing(number: int, body: str) -> Outgoing:
    entry = Entry("0", f"e{number:04d}", f"m{number}", None, "READY", 0, 0, None)
    return Outgoing(entry, body, {}, None)


def test_a_message_too_long_for_any_batch_is_rejected_and_the_rest_are_sent(strict_sqs: Outbox) -> None:
    """Body at 1 MiB plus its `message_id` attribute: SQS (and the hook) refuse even a batch of one, with
    `AWS.SimpleQueueService.BatchRequestTooLong`. It must come back REJECTED (to be poisoned), not UNKNOWN
    (rolled back uncounted and sent again next run)."""
    url = strict_sqs.resources.queue_url
    small, too_long, other = _outgoing(1, "a"), _outgoing(2, "x" * MAX_BATCH_BYTES), _outgoing(3, "b")

    results, _ = Sender(sqs_client(), url, retry_policy=FAST_RETRIES, fifo=False).send(
        [small, too_long, other], deadline=lambda: 30.0
    )

    outcomes = {result.outgoing.entry.message_id: result for result in results}
    assert outcomes["m2"].outcome is Outcome.REJECTED
    assert "BatchRequestTooLong" in (outcomes["m2"].error or "")
    assert (outcomes["m1"].outcome, outcomes["m3"].outcome) == (Outcome.ACCEPTED, Outcome.ACCEPTED)
    assert sorted(message["Body"] for message in receive_all(url)) == ["a", "b"]


@pytest.mark.server
def test_a_batch_refused_as_too_long_is_split_and_only_its_culprit_poisoned(server_outbox: Outbox) -> None:
    """Over HTTP, every batch holding one message is refused as real SQS refuses it (`__type` the modeled
    name, `x-amzn-query-error` the prefixed code). The relay splits down to that message, poisons it, and
    delivers the rest in the same run."""
    server_outbox = one_shard(server_outbox)  # the three in one batch, as a shard's batch holds them
    first, culprit, last = ingest_messages(server_outbox, 3)
    faults = FaultInjector(sqs_client()).add(
        "SendMessageBatch", FaultKind.BATCH_TOO_LONG, when=culprit, times=None
    )

    summary = run_relay(make_relay(server_outbox))

    assert faults.injected[("SendMessageBatch", FaultKind.BATCH_TOO_LONG)] >= 2  # the batch, then halves
    assert (summary.sent, summary.poisoned, summary.rolled_back) == (2, 1, 0)
    message = server_outbox.message(culprit)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert "BatchRequestTooLong" in message["last_error"]["S"]
    (entry,) = [e for e in server_outbox.entries() if e["message_id"]["S"] == culprit]
    assert entry["state"] == {"S": EntryState.PARKED}
    for delivered in (first, last):
        assert server_outbox.message(delivered)["status"] == {"S": Status.QUEUED}  # type: ignore[index]
    received = [message_id_of(m) for m in receive_all(server_outbox.resources.queue_url)]
    assert sorted(received) == sorted([first, last])


@pytest.mark.server
def test_the_fault_injector_answers_as_real_sqs_does(server_outbox: Outbox) -> None:
    """botocore maps the answer to SQS's modeled exception, with the prefixed code, as it would on AWS."""
    client = sqs_client()
    FaultInjector(client).add("SendMessageBatch", FaultKind.BATCH_TOO_LONG)
    with pytest.raises(client.exceptions.BatchRequestTooLong) as caught:
        client.send_message_batch(
            QueueUrl=server_outbox.resources.queue_url, Entries=[{"Id": "0", "MessageBody": "x"}]
        )
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert receive_all(server_outbox.resources.queue_url) == []

"""The S3 claim check wired end to end (ADR 0023): a payload above what a DynamoDB item holds is written to
S3 before the ingest transaction, its message item names the object, the relay checks the object is there
(`HeadObject`) and sends the AWS SQS Extended Client's pointer instead of the payload, and a consumer gets
the payload back through that library or through the outbox's consumer helper. Assertions read the tables,
the bucket and the queue back, past the code under test."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError

from outbox import Status, enqueue, outbox_write
from outbox.consumer import ConsumedMessage, OutboxConsumer, PayloadUnreadable
from outbox.core.clients import dynamodb_client, s3_client, sqs_client
from outbox.core.errors import InvalidRequest, PayloadTooLarge
from outbox.core.schema import EXTENDED_PAYLOAD_SIZE_ATTRIBUTE, PAYLOAD_GRACE_DAYS, S3_PAYLOAD_PREFIX
from outbox.core.settings import MAX_PAYLOAD_CEILING_BYTES, S3_MAX_PAYLOAD_BYTES, Settings
from outbox.core.validation import (
    MAX_CALLER_ATTRIBUTES,
    MESSAGE_CONTENT_LIMIT_BYTES,
    S3_BOUND_MAX_CALLER_ATTRIBUTES,
    validate_message,
)
from outbox.data.claim_check import (
    PayloadObject,
    attributes_left_for_caller,
    is_pointer_body,
    pointer_attributes,
    pointer_body,
)
from outbox.data.item_size import item_size
from outbox.data.payloads import INLINE_ITEM_LIMIT_BYTES
from outbox.data.store import MessageStore
from outbox.ingest import handler as ingest
from outbox.ingest.service import message_status
from outbox.local.consumer import lambda_sqs_event
from outbox.local.emulator import EmbeddedAws
from outbox.local.queue import message_id_of
from outbox.testing.faults import BufferedBody, FaultInjector, FaultKind
from relay.entries import Entry
from relay.sender import Outgoing, Sender
from tests.conftest import (
    FAST_RETRIES,
    Outbox,
    call_ingest,
    make_relay,
    one_shard,
    receive_all,
    run_outbox,
    run_relay,
)

LARGE = {"blob": "x" * 400_000}
"""400 KB of JSON: past the 350,000 bytes an item holds, so it goes to S3."""
LARGE_JSON = json.dumps(LARGE, separators=(",", ":"))
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


def _attributes(count: int) -> dict[str, str]:
    return {f"a{number}": "v" for number in range(count)}


def _only_object(outbox: Outbox) -> tuple[str, bytes]:
    ((key, data),) = outbox.objects().items()
    return key, data


def _store(outbox: Outbox) -> MessageStore:
    return MessageStore(
        dynamodb_client(), outbox.settings.messages_table, payloads_table=outbox.settings.payloads_table
    )


def _answer_s3(status: int, body: bytes, *, method: str) -> list[str]:
    """Answer the outbox's S3 client's `method` requests in S3's place with `status` and an error `body`
    (HEAD's has none), so botocore parses and retries them as it would on AWS. Returns the URLs answered."""
    answered: list[str] = []

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if request.method != method:
            return None
        answered.append(request.url)
        headers = HTTPHeaders.from_dict({"Content-Type": "application/xml"})
        return AWSResponse(request.url, status, headers, BufferedBody(b"" if method == "HEAD" else body))

    s3_client().meta.events.register("before-send.s3", before_send)
    return answered


@pytest.fixture
def extended_sqs(s3_outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An SQS client made as `amazon-sqs-extended-client` documents it (`import sqs_extended_client`,
    which replaces `boto3.Session`, then `boto3.client("sqs")` with `large_payload_support`), for this
    test only (tests/test_claim_check.py explains the patching)."""
    saved = boto3.Session, boto3.session.Session, boto3.DEFAULT_SESSION
    library = importlib.import_module("sqs_extended_client")
    boto3.Session, boto3.session.Session, boto3.DEFAULT_SESSION = saved
    monkeypatch.setattr(boto3, "Session", library.client.SQSExtendedClientSession)
    monkeypatch.setattr(boto3.session, "Session", library.client.SQSExtendedClientSession)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    client = boto3.client("sqs")
    client.large_payload_support = s3_outbox.settings.payloads_bucket
    return client


# --- ingest ------------------------------------------------------------------------------------------------


def test_a_payload_above_an_item_goes_to_s3_and_its_message_item_stays_small(s3_outbox: Outbox) -> None:
    status, body, _ = call_ingest("POST", "/messages", {"payload": LARGE})

    assert status == 202, body
    key, data = _only_object(s3_outbox)
    assert key.startswith(S3_PAYLOAD_PREFIX)
    assert data == LARGE_JSON.encode()  # the payload exactly as accepted, once
    message = s3_outbox.message(body["message_id"])
    assert message is not None
    assert "payload" not in message
    assert message["payload_ref"] == {"S": f"s3://{s3_outbox.settings.payloads_bucket}/{key}"}
    assert message["payload_size"] == {"N": str(len(LARGE_JSON))}
    assert item_size(message) <= INLINE_ITEM_LIMIT_BYTES
    assert s3_outbox.payloads() == {}  # not in the Payloads table as well


def test_a_payload_the_payloads_table_can_hold_still_goes_there(s3_outbox: Outbox) -> None:
    """Below the item ceiling nothing changes with a bucket configured: the Payloads table (ADR 0023)."""
    payload = {"blob": "x" * (MAX_PAYLOAD_CEILING_BYTES - 20)}
    status, body, _ = call_ingest("POST", "/messages", {"payload": payload})

    assert status == 202, body
    assert s3_outbox.objects() == {}
    ((payload_id, _),) = s3_outbox.payloads().items()
    assert s3_outbox.message(body["message_id"])["payload_ref"] == {"S": payload_id}  # type: ignore[index]


def test_the_largest_payload_allowed_is_accepted_and_one_byte_more_is_not(s3_outbox: Outbox) -> None:
    """MAX_PAYLOAD_BYTES at its ceiling: a body well past the 2 MiB the API read before the claim check."""
    largest = "x" * (S3_MAX_PAYLOAD_BYTES - 2)  # a JSON string: two quotes more

    status, body, _ = call_ingest("POST", "/messages", {"payload": largest})
    assert status == 202, body
    assert len(_only_object(s3_outbox)[1]) == S3_MAX_PAYLOAD_BYTES

    status, body, _ = call_ingest("POST", "/messages", {"payload": largest + "x"})
    assert (status, body["error"]["code"]) == (413, "payload_too_large")


def test_a_payload_above_max_payload_bytes_is_refused_and_nothing_is_written(
    s3_outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", "500000")
    ingest._settings.cache_clear()

    status, body, _ = call_ingest("POST", "/messages", {"payload": "x" * 500_000})

    assert (status, body["error"]["code"], body["error"]["field"]) == (413, "payload_too_large", "payload")
    assert s3_outbox.objects() == {}
    assert s3_outbox.counts() == (0, 0)


def test_without_a_bucket_a_payload_above_an_item_is_refused_as_before(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(MAX_PAYLOAD_CEILING_BYTES))
    ingest._settings.cache_clear()

    status, body, _ = call_ingest("POST", "/messages", {"payload": "x" * MAX_PAYLOAD_CEILING_BYTES})

    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert outbox.counts() == (0, 0)


def test_an_s3_bound_message_with_nine_attributes_is_refused_and_nothing_is_written(
    s3_outbox: Outbox,
) -> None:
    status, body, _ = call_ingest(
        "POST", "/messages", {"payload": LARGE, "attributes": _attributes(MAX_CALLER_ATTRIBUTES)}
    )

    assert status == 400
    assert body["error"]["code"] == "too_many_attributes"
    assert body["error"]["field"] == "attributes"
    assert "at most 8" in body["error"]["message"]
    assert "S3" in body["error"]["message"]
    assert EXTENDED_PAYLOAD_SIZE_ATTRIBUTE in body["error"]["message"]
    assert s3_outbox.objects() == {}
    assert s3_outbox.counts() == (0, 0)
    assert s3_outbox.payloads() == {}


def test_nine_attributes_are_still_fine_on_a_payload_dynamodb_holds(s3_outbox: Outbox) -> None:
    status, body, _ = call_ingest(
        "POST", "/messages", {"payload": {"n": 1}, "attributes": _attributes(MAX_CALLER_ATTRIBUTES)}
    )
    assert status == 202, body


def test_a_keyed_replay_answers_200_and_leaves_the_accepted_object_alone(s3_outbox: Outbox) -> None:
    key = {"Idempotency-Key": "order-1"}
    status, first, _ = call_ingest("POST", "/messages", {"payload": LARGE}, headers=key)
    assert status == 202
    message = s3_outbox.message(first["message_id"])
    assert message is not None
    accepted_key = message["payload_ref"]["S"].split("/", 3)[3]
    accepted = s3_outbox.objects()[accepted_key]

    status, again, _ = call_ingest("POST", "/messages", {"payload": LARGE}, headers=key)
    assert (status, again["message_id"], again["status"]) == (200, first["message_id"], "PENDING")
    changed = {**LARGE, "changed": True}
    status, conflict, _ = call_ingest("POST", "/messages", {"payload": changed}, headers=key)
    assert (status, conflict["error"]["code"]) == (409, "idempotency_key_reused")

    objects = s3_outbox.objects()
    assert objects[accepted_key] == accepted  # never overwritten: each request wrote under a key of its own
    assert len(objects) == 3  # the replay's and the conflict's objects are orphans the lifecycle expires
    assert s3_outbox.message(first["message_id"]) == message
    record = message_status(first["message_id"], store=_store(s3_outbox), include_payload=True)
    assert record["payload"] == LARGE


@pytest.mark.server
def test_a_put_object_that_fails_answers_503_and_writes_nothing(s3_server_outbox: Outbox) -> None:
    outbox = s3_server_outbox
    answered = _answer_s3(503, SLOW_DOWN, method="PUT")

    status, body, _ = call_ingest("POST", "/messages", {"payload": LARGE})

    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    assert len(answered) == 3  # botocore's standard retries first
    assert outbox.objects() == {}
    assert outbox.counts() == (0, 0)


@pytest.mark.server
def test_a_transaction_failing_after_the_object_leaves_only_an_orphan_and_a_retry_is_accepted(
    s3_server_outbox: Outbox,
) -> None:
    outbox = s3_server_outbox
    injector = FaultInjector(dynamodb_client())
    injector.add("TransactWriteItems", FaultKind.SERVER_ERROR, times=None)
    key = {"Idempotency-Key": "k"}

    status, _, _ = call_ingest("POST", "/messages", {"payload": LARGE}, headers=key)

    assert status == 503
    assert outbox.counts() == (0, 0)
    (orphan,) = outbox.objects()  # named by no message: the bucket's lifecycle rule expires it
    injector.clear()
    status, body, _ = call_ingest("POST", "/messages", {"payload": LARGE}, headers=key)
    assert status == 202
    message = outbox.message(body["message_id"])
    assert message is not None
    assert not message["payload_ref"]["S"].endswith(orphan)  # the retry wrote its own object
    assert run_relay(make_relay(outbox)).sent == 1


def test_outbox_write_stores_the_object_before_the_callers_transaction(s3_outbox: Outbox) -> None:
    write = outbox_write(LARGE, settings=s3_outbox.settings)

    key, data = _only_object(s3_outbox)
    assert data == LARGE_JSON.encode()
    item = write.items[0]["Put"]["Item"]
    assert item["payload_ref"] == {"S": f"s3://{s3_outbox.settings.payloads_bucket}/{key}"}
    assert "payload" not in item
    assert s3_outbox.counts() == (0, 0)  # nothing else is written until the caller commits

    dynamodb_client().transact_write_items(TransactItems=write.items)
    assert run_relay(make_relay(s3_outbox)).sent == 1


def test_enqueue_through_the_library_refuses_nine_attributes_on_an_s3_bound_payload(
    s3_outbox: Outbox,
) -> None:
    with pytest.raises(InvalidRequest, match="at most 8 attributes") as refused:
        enqueue(LARGE, settings=s3_outbox.settings, attributes=_attributes(9))
    assert refused.value.code == "too_many_attributes"
    accepted = enqueue(LARGE, settings=s3_outbox.settings, attributes=_attributes(8))
    assert accepted.status is Status.PENDING


# --- reads ------------------------------------------------------------------------------------------------


def test_get_with_include_payload_reads_the_object(s3_outbox: Outbox) -> None:
    _, body, _ = call_ingest("POST", "/messages", {"payload": LARGE, "attributes": {"kind": "big"}})

    status, record, _ = call_ingest("GET", f"/messages/{body['message_id']}", query={"include": "payload"})

    assert status == 200
    assert record["payload"] == LARGE
    assert record["attributes"] == {"kind": "big"}
    assert "payload_error" not in record


def test_an_object_that_is_gone_leaves_the_status_readable_with_a_payload_error(s3_outbox: Outbox) -> None:
    _, body, _ = call_ingest("POST", "/messages", {"payload": LARGE})
    key, _ = _only_object(s3_outbox)
    s3_client().delete_object(Bucket=s3_outbox.settings.payloads_bucket or "", Key=key)

    status, record, _ = call_ingest("GET", f"/messages/{body['message_id']}", query={"include": "payload"})

    assert (status, record["status"], record["payload"]) == (200, "PENDING", None)
    assert "is gone" in record["payload_error"]
    assert key in record["payload_error"]


def test_an_object_s3_refuses_to_read_is_reported_like_one_that_is_gone(s3_outbox: Outbox) -> None:
    """Without `s3:ListBucket` (the grants give none) S3 answers 403 for a key that does not exist."""
    _, body, _ = call_ingest("POST", "/messages", {"payload": LARGE})
    access_denied = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    _answer_s3(403, access_denied, method="GET")

    status, record, _ = call_ingest("GET", f"/messages/{body['message_id']}", query={"include": "payload"})

    assert (status, record["payload"]) == (200, None)
    assert "AccessDenied" in record["payload_error"]


def test_outbox_status_payload_reads_the_object(s3_outbox: Outbox) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from outbox import cli  # noqa: PLC0415

    accepted = enqueue(LARGE, settings=s3_outbox.settings)

    result = CliRunner().invoke(cli.app, ["status", accepted.message_id, "--payload", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["payload"] == LARGE


# --- the relay --------------------------------------------------------------------------------------------


def test_the_relay_sends_the_pointer_and_never_reads_the_object(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings, attributes={"kind": "big"})
    key, _ = _only_object(s3_outbox)
    s3_calls: list[str] = []
    s3_client().meta.events.register(
        "before-parameter-build.s3", lambda model, **_: s3_calls.append(model.name)
    )
    tables_read: list[str] = []
    dynamodb_client().meta.events.register(
        "before-parameter-build.dynamodb.BatchGetItem",
        lambda params, **_: tables_read.extend(params["RequestItems"]),
    )

    summary = run_relay(make_relay(s3_outbox))

    assert summary.sent == 1
    assert s3_calls == ["HeadObject"]  # is it there? never its content
    assert tables_read == [s3_outbox.settings.messages_table]  # and no Payloads read for it
    (sent,) = receive_all(s3_outbox.resources.queue_url)
    obj = PayloadObject(s3_outbox.settings.payloads_bucket or "", key, len(LARGE_JSON))
    assert sent["Body"] == pointer_body(obj)
    assert sent["MessageAttributes"] == {
        "message_id": {"DataType": "String", "StringValue": accepted.message_id},
        "kind": {"DataType": "String", "StringValue": "big"},
        EXTENDED_PAYLOAD_SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(len(LARGE_JSON))},
    }
    assert is_pointer_body(sent["Body"], sent["MessageAttributes"]) == obj
    queued = s3_outbox.message(accepted.message_id)
    assert queued is not None
    assert queued["status"] == {"S": Status.QUEUED}
    assert item_size(queued) <= INLINE_ITEM_LIMIT_BYTES


def test_the_extended_client_receives_the_payload_and_a_plain_client_the_pointer(
    s3_outbox: Outbox, extended_sqs: Any
) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    assert run_relay(make_relay(s3_outbox)).sent == 1
    queue_url = s3_outbox.resources.queue_url

    (plain,) = sqs_client().receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    (extended,) = extended_sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["message_id"])[
        "Messages"
    ]

    assert json.loads(plain["Body"])[0] == "software.amazon.payloadoffloading.PayloadS3Pointer"
    assert plain["MessageAttributes"][EXTENDED_PAYLOAD_SIZE_ATTRIBUTE]["DataType"] == "Number"
    assert json.loads(extended["Body"]) == LARGE
    assert extended["MessageAttributes"] == {
        "message_id": {"DataType": "String", "StringValue": accepted.message_id}
    }
    extended_sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=extended["ReceiptHandle"])
    assert receive_all(queue_url) == []
    assert len(s3_outbox.objects()) == 1  # a consumer leaves the object to the lifecycle rule


@pytest.mark.server
def test_an_s3_bound_message_with_eight_attributes_fills_the_ten_sqs_allows(
    s3_server_outbox: Outbox,
) -> None:
    """On the server with the strict contract, which refuses an eleventh attribute as SQS does."""
    outbox = s3_server_outbox
    enqueue(LARGE, settings=outbox.settings, attributes=_attributes(S3_BOUND_MAX_CALLER_ATTRIBUTES))

    assert run_relay(make_relay(outbox)).sent == 1

    (sent,) = receive_all(outbox.resources.queue_url)
    assert len(sent["MessageAttributes"]) == 10


def test_large_and_small_messages_relay_in_one_batch(s3_outbox: Outbox) -> None:
    """In S3, in the Payloads table, inline: three kinds in one batch, each body as its consumer needs it."""
    in_s3 = enqueue(LARGE, settings=s3_outbox.settings)
    apart = enqueue({"blob": "y" * 2_000}, settings=s3_outbox.settings)
    inline = enqueue({"n": 1}, settings=s3_outbox.settings)

    assert run_relay(make_relay(s3_outbox)).sent == 3

    bodies = {message_id_of(m): m for m in receive_all(s3_outbox.resources.queue_url)}
    assert is_pointer_body(bodies[in_s3.message_id]["Body"], bodies[in_s3.message_id]["MessageAttributes"])
    assert json.loads(bodies[apart.message_id]["Body"]) == {"blob": "y" * 2_000}
    assert json.loads(bodies[inline.message_id]["Body"]) == {"n": 1}
    assert EXTENDED_PAYLOAD_SIZE_ATTRIBUTE not in bodies[inline.message_id]["MessageAttributes"]


def test_an_object_deleted_before_the_relay_is_never_pointed_at_the_message_is_parked(
    s3_outbox: Outbox,
) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    key, _ = _only_object(s3_outbox)
    s3_client().delete_object(Bucket=s3_outbox.settings.payloads_bucket or "", Key=key)

    summary = run_relay(make_relay(s3_outbox))

    assert (summary.sent, summary.poisoned) == (0, 1)
    assert receive_all(s3_outbox.resources.queue_url) == []
    message = s3_outbox.message(accepted.message_id)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert key in message["last_error"]["S"]
    assert "gone" in message["last_error"]["S"]
    (entry,) = s3_outbox.entries()
    assert entry["state"] == {"S": "PARKED"}  # kept for an operator's requeue, not lost


def test_an_object_s3_refuses_to_head_is_parked_saying_so(s3_outbox: Outbox) -> None:
    """403: gone (no s3:ListBucket to say 404) or not the relay's to read; either way no pointer."""
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    _answer_s3(403, b"", method="HEAD")

    summary = run_relay(make_relay(s3_outbox))

    assert (summary.sent, summary.poisoned) == (0, 1)
    message = s3_outbox.message(accepted.message_id)
    assert message is not None
    assert "cannot be read" in message["last_error"]["S"]


def test_an_object_of_another_size_than_recorded_is_never_pointed_at(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    key, _ = _only_object(s3_outbox)
    s3_client().put_object(Bucket=s3_outbox.settings.payloads_bucket or "", Key=key, Body=b"{}")

    summary = run_relay(make_relay(s3_outbox))

    assert (summary.sent, summary.poisoned) == (0, 1)
    message = s3_outbox.message(accepted.message_id)
    assert message is not None
    assert "holds 2 bytes" in message["last_error"]["S"]


def test_a_pointer_without_a_recorded_size_is_parked_never_sent(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    dynamodb_client().update_item(
        TableName=s3_outbox.settings.messages_table,
        Key={"message_id": {"S": accepted.message_id}},
        UpdateExpression="REMOVE payload_size",
    )

    summary = run_relay(make_relay(s3_outbox))

    assert (summary.sent, summary.poisoned) == (0, 1)
    assert receive_all(s3_outbox.resources.queue_url) == []
    message = s3_outbox.message(accepted.message_id)
    assert message is not None
    assert "no recorded payload_size" in message["last_error"]["S"]


def test_a_head_that_fails_for_now_leaves_the_message_for_a_later_run(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    answered = _answer_s3(503, b"", method="HEAD")
    relay = make_relay(s3_outbox)

    first = run_relay(relay)

    assert answered  # botocore's and the relay's retries ran out
    assert (first.sent, first.poisoned, first.drained) == (0, 0, False)
    assert s3_outbox.message(accepted.message_id)["status"] == {"S": Status.PENDING}  # type: ignore[index]
    assert [entry["state"]["S"] for entry in s3_outbox.entries()] == ["READY"]
    s3_client.cache_clear()  # S3 answers again: the next client has no hook
    assert run_relay(make_relay(s3_outbox)).sent == 1


def test_a_fifo_group_keeps_its_order_through_a_pointer(s3_fifo_outbox: Outbox) -> None:
    outbox = one_shard(s3_fifo_outbox)
    first = enqueue(LARGE, settings=outbox.settings, group_id="g")
    second = enqueue({"n": 2}, settings=outbox.settings, group_id="g")

    assert run_relay(make_relay(outbox)).sent == 2

    received = receive_all(outbox.resources.queue_url)
    assert [message_id_of(m) for m in received] == [first.message_id, second.message_id]
    assert received[0]["Attributes"]["MessageGroupId"] == "g"
    assert is_pointer_body(received[0]["Body"], received[0]["MessageAttributes"]) is not None


def test_a_relay_without_the_bucket_setting_still_sends_the_pointer(s3_outbox: Outbox) -> None:
    """The message item's URI names the object: the relay needs no setting to point at it (its role needs
    `s3:GetObject` on the prefix for the `HeadObject`)."""
    enqueue(LARGE, settings=s3_outbox.settings)
    relay_settings = replace(s3_outbox.settings, payloads_bucket=None, max_payload_bytes=262_144)

    assert run_relay(make_relay(Outbox(s3_outbox.resources, relay_settings))).sent == 1


# --- the consumer helper ----------------------------------------------------------------------------------


def _delivered(outbox: Outbox) -> SQSRecord:
    (message,) = receive_all(outbox.resources.queue_url)
    (record,) = lambda_sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")["Records"]
    return SQSRecord(record)


def _recorded(seen: list[ConsumedMessage]) -> Any:
    def work(message: ConsumedMessage) -> None:
        seen.append(message)

    return work


def test_the_consumer_helper_hands_over_the_payload_not_the_pointer(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings, attributes={"kind": "big"})
    run_relay(make_relay(s3_outbox))
    consumer = OutboxConsumer(
        dynamodb_client(),
        messages_table=s3_outbox.settings.messages_table,
        payloads_bucket=s3_outbox.settings.payloads_bucket,
    )
    seen: list[ConsumedMessage] = []

    consumer.consume(_delivered(s3_outbox), _recorded(seen))

    (message,) = seen
    assert (message.message_id, message.payload) == (accepted.message_id, LARGE)
    assert message.attributes == {"kind": "big"}  # the pointer's size attribute is the helper's business
    assert s3_outbox.message(accepted.message_id)["status"] == {"S": Status.COMPLETED}  # type: ignore[index]
    assert len(s3_outbox.objects()) == 1  # left to the lifecycle rule: a redrive still needs it


def test_the_consumer_helper_gives_back_a_message_whose_object_is_gone(s3_outbox: Outbox) -> None:
    accepted = enqueue(LARGE, settings=s3_outbox.settings)
    run_relay(make_relay(s3_outbox))
    key, _ = _only_object(s3_outbox)
    s3_client().delete_object(Bucket=s3_outbox.settings.payloads_bucket or "", Key=key)
    consumer = OutboxConsumer(dynamodb_client(), messages_table=s3_outbox.settings.messages_table)
    ran: list[ConsumedMessage] = []

    with pytest.raises(PayloadUnreadable, match="is gone"):
        consumer.consume(_delivered(s3_outbox), _recorded(ran))

    assert ran == []  # never consumed empty
    message = s3_outbox.message(accepted.message_id)
    assert message is not None
    assert message["status"] == {"S": Status.QUEUED}  # given back: SQS delivers it again, then its DLQ
    assert "PayloadUnreadable" in message["last_error"]["S"]


def test_the_consumer_helper_refuses_a_pointer_to_another_bucket(s3_outbox: Outbox) -> None:
    enqueue(LARGE, settings=s3_outbox.settings)
    run_relay(make_relay(s3_outbox))
    consumer = OutboxConsumer(
        dynamodb_client(), messages_table=s3_outbox.settings.messages_table, payloads_bucket="not-ours"
    )

    with pytest.raises(PayloadUnreadable, match="not 'not-ours'"):
        consumer.consume(_delivered(s3_outbox), lambda message: None)


# --- settings, validation and the pieces, without AWS ------------------------------------------------------


def _validate(attributes: dict[str, str] | None = None, *, claim_check: bool) -> str:
    request = validate_message(
        LARGE,
        attributes=attributes,
        fifo=False,
        max_payload_bytes=S3_MAX_PAYLOAD_BYTES,
        claim_check=claim_check,
    )
    return request.payload_json


def test_validation_counts_attributes_alone_against_the_item_for_an_s3_bound_payload() -> None:
    """The attributes stay in the message item (and go to SQS beside the pointer): 380,000 bytes at most."""
    most = "v" * (MESSAGE_CONTENT_LIMIT_BYTES - len("big") - len("String"))

    assert _validate({"big": most}, claim_check=True) == LARGE_JSON
    with pytest.raises(PayloadTooLarge, match="attributes are 380001 bytes") as too_large:
        _validate({"big": most + "v"}, claim_check=True)
    assert too_large.value.code == "message_too_large"
    with pytest.raises(PayloadTooLarge, match="payload and attributes") as without_bucket:
        _validate(claim_check=False)  # the item would have to hold the payload: refused, never sent
    assert without_bucket.value.code == "message_too_large"


def test_validation_and_the_pointer_agree_on_the_attribute_budget() -> None:
    assert S3_BOUND_MAX_CALLER_ATTRIBUTES == attributes_left_for_caller(s3_bound=True) == 8
    assert MAX_CALLER_ATTRIBUTES == attributes_left_for_caller(s3_bound=False) == 9


def test_outgoing_counts_the_pointers_attribute_and_the_sender_sends_it() -> None:
    obj = PayloadObject("b", "payloads/k", 400_000)
    entry = Entry(
        shard="0",
        entry_id="e",
        message_id="m",
        group_id=None,
        state="READY",
        attempts=0,
        next_attempt_at=0,
        first_send_at=None,
    )
    outgoing = Outgoing(entry, pointer_body(obj), {"kind": "big"}, None, None, pointer_attributes(obj))
    plain = Outgoing(entry, pointer_body(obj), {"kind": "big"}, None)

    size_attribute = len(EXTENDED_PAYLOAD_SIZE_ATTRIBUTE) + len("Number") + len("400000")
    assert outgoing.size() == plain.size() + size_attribute
    sent: list[dict[str, Any]] = []

    class Queue:
        def send_message_batch(self, **request: Any) -> dict[str, Any]:
            sent.extend(request["Entries"])
            return {"Successful": [{"Id": "0", "MessageId": "sqs-1"}], "Failed": []}

    results, _ = Sender(Queue(), "q", retry_policy=FAST_RETRIES, fifo=False).send(  # type: ignore[arg-type]
        [outgoing], deadline=lambda: 60.0
    )
    assert [result.sqs_message_id for result in results] == ["sqs-1"]
    assert sent[0]["MessageAttributes"][EXTENDED_PAYLOAD_SIZE_ATTRIBUTE] == {
        "DataType": "Number",
        "StringValue": "400000",
    }


# --- outbox init ------------------------------------------------------------------------------------------


@pytest.mark.server
def test_init_makes_the_bucket_only_when_asked(
    moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = ["--endpoint-url", moto_server.endpoint_url]
    without = run_outbox("init", *endpoint, "--prefix", "no_claims")
    with_bucket = run_outbox("init", *endpoint, "--prefix", "With_Claims", "--s3-claim-check")
    again = run_outbox("init", *endpoint, "--prefix", "With_Claims", "--s3-claim-check")

    assert without.returncode == with_bucket.returncode == again.returncode == 0, with_bucket.stderr
    assert "PAYLOADS_BUCKET" not in without.stdout
    assert with_bucket.stdout == again.stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in with_bucket.stdout.splitlines())
    assert exports["PAYLOADS_BUCKET"] == "with-claims-payloads"  # a bucket name is lower case, no '_'
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    s3_client.cache_clear()
    rules = s3_client().get_bucket_lifecycle_configuration(Bucket="with-claims-payloads")["Rules"]
    assert [(rule["Filter"], rule["Expiration"]) for rule in rules] == [
        ({"Prefix": S3_PAYLOAD_PREFIX}, {"Days": Settings.retention_days + PAYLOAD_GRACE_DAYS})
    ]
    with pytest.raises(ClientError):
        s3_client().head_bucket(Bucket="no-claims-payloads")


def test_init_refuses_a_prefix_that_makes_no_bucket_name() -> None:
    result = run_outbox("init", "--endpoint-url", "http://localhost:9", "--prefix", "_x", "--s3-claim-check")

    assert result.returncode == 2
    assert result.stderr.startswith("usage error: --prefix '_x'")
    assert "Traceback" not in result.stderr


def test_init_help_tells_of_the_claim_check() -> None:
    result = run_outbox("init", "--help")
    assert "--s3-claim-check" in result.stdout
    assert "global" in result.stdout


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _no_leftover_hooks() -> Iterator[None]:
    """Hooks registered on the cached S3 client go with it."""
    yield
    s3_client.cache_clear()

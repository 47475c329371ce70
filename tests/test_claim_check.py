"""The S3 claim check (outbox/data/claim_check.py) on moto in-process: the objects it stores, the pointers
it writes as AWS's own `amazon-sqs-extended-client` receives them, and that library's messages as it reads
them."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError
from moto import mock_aws

from outbox.core.errors import StoreUnavailable
from outbox.core.schema import (
    EXTENDED_PAYLOAD_SIZE_ATTRIBUTE,
    LEGACY_PAYLOAD_SIZE_ATTRIBUTE,
    S3_PAYLOAD_PREFIX,
)
from outbox.core.validation import MAX_CALLER_ATTRIBUTES
from outbox.data.claim_check import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    RESERVED_ATTRIBUTES,
    SIZE_UNKNOWN,
    SQS_MAX_MESSAGE_ATTRIBUTES,
    PayloadObject,
    attributes_left_for_caller,
    is_pointer_body,
    object_key,
    pointer_attributes,
    pointer_body,
    put_payload,
    read_payload,
)
from outbox.testing.faults import BufferedBody

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
BUCKET = "outbox-payloads"
MESSAGE_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
PAYLOAD_ID = "0190a1b2-c3d4-7e5f-8a9b-ffffffffffff"
PAYLOAD = json.dumps({"note": "café €, ☃", "blob": "x" * 1_500_000}, ensure_ascii=False)
"""1.5 MB of JSON, past SQS's 1 MiB and DynamoDB's 400 KB, with characters of two and three UTF-8 bytes."""
JAVA_LAYOUT = (
    '["software.amazon.payloadoffloading.PayloadS3Pointer",'
    '{"s3BucketName":"outbox-payloads","s3Key":"payloads/0190a1b2-c3d4-7e5f-8a9b-ffffffffffff"}]'
)
"""A pointer as Jackson writes it: the layout of the Java libraries' and Powertools Java's test vectors."""
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)


def message_id_attribute() -> dict[str, Any]:
    """The relay's `message_id` attribute, new each time: the extended client adds its reserved attribute
    to the very dict it is given (and its name to the `MessageAttributeNames` list)."""
    return {"message_id": {"DataType": "String", "StringValue": MESSAGE_ID}}


@dataclass
class Aws:
    s3: S3Client
    sqs: SQSClient
    queue_url: str

    def stored(self, key: str) -> tuple[bytes, str]:
        """An object's bytes and content type, read past the code under test."""
        response = self.s3.get_object(Bucket=BUCKET, Key=key)
        return response["Body"].read(), response["ContentType"]

    def keys(self) -> list[str]:
        return [item["Key"] for item in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def queued(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """moto in-process with the payload bucket and a standard queue. The clients come from botocore
    sessions, like the outbox's own (`outbox.core.clients`), so the extended client's patch of boto3
    never touches them."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3: S3Client = botocore.session.get_session().create_client("s3", region_name=REGION)
        sqs: SQSClient = botocore.session.get_session().create_client("sqs", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield Aws(s3, sqs, sqs.create_queue(QueueName="claim-check")["QueueUrl"])


@pytest.fixture
def extended_sqs(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An SQS client made the library's documented way: `import sqs_extended_client` (which replaces
    `boto3.Session` with its own), `boto3.client("sqs")`, `large_payload_support = <bucket>`.

    The import patches boto3 for the whole process; here that lasts for this test only, so no other test
    gets a patched boto3."""
    saved = boto3.Session, boto3.session.Session, boto3.DEFAULT_SESSION
    library = importlib.import_module("sqs_extended_client")
    boto3.Session, boto3.session.Session, boto3.DEFAULT_SESSION = saved
    monkeypatch.setattr(boto3, "Session", library.client.SQSExtendedClientSession)
    monkeypatch.setattr(boto3.session, "Session", library.client.SQSExtendedClientSession)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    client = boto3.client("sqs", region_name=REGION)
    client.large_payload_support = BUCKET
    return client


def send_pointer(aws: Aws, obj: PayloadObject, attributes: dict[str, Any] | None = None) -> None:
    """What the relay will send for a claim-checked message: the pointer body, the reserved attribute and
    `message_id`."""
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=pointer_body(obj),
        MessageAttributes=attributes or {**pointer_attributes(obj), **message_id_attribute()},
    )


def answering(client: S3Client, status: int, body: bytes) -> list[str]:
    """Answer every request of `client` with `status` and an S3 error `body` in place of the server, so
    botocore parses and retries it as it would on AWS; returns the methods of the requests answered."""
    calls: list[str] = []

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        calls.append(request.method)
        headers = HTTPHeaders.from_dict({"Content-Type": "application/xml"})
        return AWSResponse(request.url, status, headers, BufferedBody(body))

    client.meta.events.register("before-send.s3", before_send)
    return calls


def quick_retries() -> S3Client:
    """An S3 client that tries twice, for the failure tests."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 2})
    client: S3Client = botocore.session.get_session().create_client("s3", region_name=REGION, config=config)
    return client


# The objects.


def test_put_then_read_round_trips_a_large_payload(aws: Aws) -> None:
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body=PAYLOAD)

    data = PAYLOAD.encode("utf-8")
    assert obj == PayloadObject(bucket=BUCKET, key=f"{S3_PAYLOAD_PREFIX}{PAYLOAD_ID}", size=len(data))
    assert obj.size > len(PAYLOAD)  # bytes, not characters
    assert aws.keys() == [obj.key]
    assert aws.stored(obj.key) == (data, "application/json")
    assert read_payload(aws.s3, obj) == PAYLOAD


def test_the_uri_names_the_object(aws: Aws) -> None:
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body="{}")

    assert obj.uri == f"s3://{BUCKET}/payloads/{PAYLOAD_ID}"
    assert PayloadObject.from_uri(obj.uri, obj.size) == obj
    assert read_payload(aws.s3, PayloadObject.from_uri(obj.uri, 2)) == "{}"


@pytest.mark.parametrize("uri", ["", "s3://", "s3://bucket", "s3://bucket/", "s3:///key", "https://b/k"])
def test_from_uri_refuses_what_names_no_object(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/key"):
        PayloadObject.from_uri(uri, 1)


def test_a_missing_object_reads_as_none(aws: Aws) -> None:
    assert read_payload(aws.s3, PayloadObject(BUCKET, object_key("never-written"), 10)) is None


def test_a_missing_bucket_is_unavailable_for_good(aws: Aws) -> None:
    with pytest.raises(StoreUnavailable, match=r"GetObject: NoSuchBucket") as raised:
        read_payload(aws.s3, PayloadObject("no-such-bucket", object_key("x"), 10))
    assert raised.value.retryable is False


def test_a_put_still_throttled_after_retries_is_retryable(aws: Aws) -> None:
    s3 = quick_retries()
    calls = answering(s3, 503, SLOW_DOWN)

    with pytest.raises(StoreUnavailable, match=r"PutObject: SlowDown") as raised:
        put_payload(s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body=PAYLOAD)

    assert raised.value.retryable is True
    assert calls == ["PUT", "PUT"]  # botocore retried first
    # (moto's own before-send handler still applies every request it sees, so what it stored says nothing.)


def test_a_refused_put_is_not_retryable(aws: Aws) -> None:
    s3 = quick_retries()
    calls = answering(s3, 403, ACCESS_DENIED)

    with pytest.raises(StoreUnavailable, match=r"PutObject: AccessDenied") as raised:
        put_payload(s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body="{}")

    assert raised.value.retryable is False
    assert calls == ["PUT"]


def test_a_connection_error_is_retryable(aws: Aws) -> None:
    s3 = quick_retries()

    def reset(request: AWSPreparedRequest, **_: Any) -> None:
        raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register("before-send.s3", reset)
    with pytest.raises(StoreUnavailable, match="S3 could not be reached: ConnectionClosedError") as put:
        put_payload(s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body="{}")
    with pytest.raises(StoreUnavailable, match="S3 could not be reached") as read:
        read_payload(s3, PayloadObject(BUCKET, object_key(PAYLOAD_ID), 2))

    assert put.value.retryable is True
    assert read.value.retryable is True


def test_a_read_failing_on_the_server_is_retryable(aws: Aws) -> None:
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body="{}")
    s3 = quick_retries()
    answering(s3, 503, SLOW_DOWN)

    with pytest.raises(StoreUnavailable, match=r"GetObject: SlowDown") as raised:
        read_payload(s3, obj)
    assert raised.value.retryable is True


@pytest.mark.parametrize("payload_id", ["", "a b", "../etc", "x/../y", "é", "a-..s3Key..-b", "x" * 1024])
def test_object_key_refuses_ids_unsafe_in_a_key(payload_id: str) -> None:
    with pytest.raises(ValueError, match="payload id"):
        object_key(payload_id)


def test_object_key_takes_message_ids_and_paths() -> None:
    assert object_key(MESSAGE_ID) == f"payloads/{MESSAGE_ID}"
    assert object_key("2026/12/01/x_y.z") == "payloads/2026/12/01/x_y.z"


# The pointer's format.


def test_the_body_is_laid_out_as_the_java_libraries_write_it() -> None:
    obj = PayloadObject(BUCKET, object_key(PAYLOAD_ID), 42)

    assert pointer_body(obj) == JAVA_LAYOUT
    assert pointer_attributes(obj) == {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "42"}}


def test_the_size_attribute_needs_a_known_size() -> None:
    with pytest.raises(ValueError, match="unknown"):
        pointer_attributes(PayloadObject(BUCKET, "payloads/x", SIZE_UNKNOWN))


@pytest.mark.parametrize(
    "body",
    [
        JAVA_LAYOUT,
        json.dumps(json.loads(JAVA_LAYOUT)),  # the Python library's layout
        JAVA_LAYOUT.replace(POINTER_CLASS, LEGACY_POINTER_CLASS),  # Java 1.x
        '[\n  "software.amazon.payloadoffloading.PayloadS3Pointer",\n  {"s3Key": "payloads/'
        + PAYLOAD_ID
        + '", "s3BucketName": "outbox-payloads", "extra": 1}\n]',
    ],
)
def test_a_pointer_body_is_read_in_any_layout(body: str) -> None:
    expected = PayloadObject(BUCKET, object_key(PAYLOAD_ID), SIZE_UNKNOWN)

    assert is_pointer_body(body) == expected
    sized = {EXTENDED_PAYLOAD_SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "42"}}
    assert is_pointer_body(body, sized) == PayloadObject(BUCKET, expected.key, 42)


@pytest.mark.parametrize(
    "attributes",
    [
        {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "7"}},
        {"SQSLargePayloadSize": {"DataType": "Number", "StringValue": "7"}},
        {
            "ExtendedPayloadSize": {"dataType": "Number", "stringValue": "7"},
            "message_id": {},
        },  # a Lambda event
    ],
)
def test_either_reserved_attribute_marks_a_pointer(attributes: dict[str, Any]) -> None:
    assert is_pointer_body(JAVA_LAYOUT, attributes) == PayloadObject(BUCKET, object_key(PAYLOAD_ID), 7)


@pytest.mark.parametrize(
    ("body", "attributes"),
    [
        (JAVA_LAYOUT, {}),  # a caller's payload shaped like a pointer: not one without the attribute
        (JAVA_LAYOUT, {"message_id": {"DataType": "String", "StringValue": MESSAGE_ID}}),
        (JAVA_LAYOUT, {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "-1"}}),
        (JAVA_LAYOUT, {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "²"}}),
        ('{"order": 1}', {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "7"}}),
        ("not json", None),
        ('["java.lang.String", {"s3BucketName": "b", "s3Key": "k"}]', None),
        (f'["{POINTER_CLASS}", {{"s3BucketName": "b"}}]', None),
        (f'["{POINTER_CLASS}", {{"s3BucketName": "", "s3Key": "k"}}]', None),
        (f'["{POINTER_CLASS}", {{"s3BucketName": "b", "s3Key": 7}}]', None),
        (f'["{POINTER_CLASS}", {{"s3BucketName": "b", "s3Key": "k"}}, 3]', None),
        ("[]", None),
    ],
)
def test_anything_else_is_no_pointer(body: str, attributes: dict[str, Any] | None) -> None:
    assert is_pointer_body(body, attributes) is None


def test_the_attribute_budget() -> None:
    assert attributes_left_for_caller(s3_bound=False) == MAX_CALLER_ATTRIBUTES == 9
    assert attributes_left_for_caller(s3_bound=True) == 8
    relay_attributes = {"message_id", EXTENDED_PAYLOAD_SIZE_ATTRIBUTE}
    assert len(relay_attributes) + attributes_left_for_caller(s3_bound=True) == SQS_MAX_MESSAGE_ATTRIBUTES
    assert {EXTENDED_PAYLOAD_SIZE_ATTRIBUTE, LEGACY_PAYLOAD_SIZE_ATTRIBUTE} == RESERVED_ATTRIBUTES


# Interoperability with AWS's `amazon-sqs-extended-client` (1.0.1).


@pytest.mark.parametrize("names", [["All"], ["message_id"]])
def test_the_extended_client_receives_the_payload_of_our_pointer(
    aws: Aws, extended_sqs: Any, names: list[str]
) -> None:
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body=PAYLOAD)
    send_pointer(aws, obj)

    (message,) = extended_sqs.receive_message(QueueUrl=aws.queue_url, MessageAttributeNames=list(names))[
        "Messages"
    ]

    assert message["Body"] == PAYLOAD
    assert message["MessageAttributes"] == {"message_id": {"StringValue": MESSAGE_ID, "DataType": "String"}}
    # Deleting through the library empties the queue and, by default, leaves the object to the lifecycle
    # rule: a second copy of the message (a resend, a redrive) still finds it.
    extended_sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert aws.queued() == 0
    assert read_payload(aws.s3, obj) == PAYLOAD


def test_the_extended_client_deletes_the_object_only_when_told_to(aws: Aws, extended_sqs: Any) -> None:
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body=PAYLOAD)
    send_pointer(aws, obj)
    extended_sqs.delete_payload_from_s3 = True

    (message,) = extended_sqs.receive_message(QueueUrl=aws.queue_url)["Messages"]
    extended_sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])

    assert aws.queued() == 0
    assert read_payload(aws.s3, obj) is None


def test_a_message_the_extended_client_sent_is_read_back(aws: Aws, extended_sqs: Any) -> None:
    extended_sqs.send_message(
        QueueUrl=aws.queue_url, MessageBody=PAYLOAD, MessageAttributes=message_id_attribute()
    )

    (raw,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, MessageAttributeNames=["All"])["Messages"]
    obj = is_pointer_body(raw["Body"], raw["MessageAttributes"])

    assert obj is not None
    assert (obj.bucket, obj.size) == (BUCKET, len(PAYLOAD.encode("utf-8")))
    assert read_payload(aws.s3, obj) == PAYLOAD
    assert raw["MessageAttributes"] == {**pointer_attributes(obj), **message_id_attribute()}
    # The same JSON value as ours; the Python library writes it with `json.dumps`'s default separators,
    # Java (and `pointer_body`) without whitespace.
    assert json.loads(raw["Body"]) == json.loads(pointer_body(obj))
    assert raw["Body"] == json.dumps(json.loads(pointer_body(obj)))
    assert raw["Body"] != pointer_body(obj)


def test_the_legacy_name_is_missed_by_a_consumer_that_names_its_attributes(
    aws: Aws, extended_sqs: Any
) -> None:
    """Why the outbox writes `ExtendedPayloadSize`: a Python consumer asking for named attributes gets
    only that one added to its request, and takes a legacy-marked pointer for an ordinary body."""
    obj = put_payload(aws.s3, bucket=BUCKET, payload_id=PAYLOAD_ID, body=PAYLOAD)
    legacy = {LEGACY_PAYLOAD_SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(obj.size)}}
    send_pointer(aws, obj, {**legacy, **message_id_attribute()})

    (message,) = extended_sqs.receive_message(QueueUrl=aws.queue_url, MessageAttributeNames=["message_id"])[
        "Messages"
    ]

    assert message["Body"] == pointer_body(obj)


def test_a_reserved_name_on_an_ordinary_message_breaks_extended_consumers(
    aws: Aws, extended_sqs: Any
) -> None:
    """Why ingest must refuse `RESERVED_ATTRIBUTES` as caller attribute names."""
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody='{"order": 1}',
        MessageAttributes={EXTENDED_PAYLOAD_SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "12"}},
    )

    with pytest.raises(Exception, match="Invalid payload format") as raised:
        extended_sqs.receive_message(QueueUrl=aws.queue_url, MessageAttributeNames=["All"])
    assert type(raised.value).__name__ == "SQSExtendedClientException"

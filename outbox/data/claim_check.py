"""The S3 claim check: a payload too large for a DynamoDB item is written to S3 before the ingest
transaction, and the relay sends a pointer to it in the format of the AWS SQS Extended Client libraries,
so a consumer built on either of them gets the payload back without knowing about the outbox.

Nothing here decides *when* a payload goes to S3 (`outbox.core.validation.travels_through_s3` and
`outbox.data.transactions.place_payload` do) or wires a client; ingest and the relay do that. This module
holds the format, the three S3 calls (ingest's `PutObject`, the relay's `HeadObject`, a reader's
`GetObject`) and the arithmetic they need.

The format, as the libraries write and read it
----------------------------------------------
Read in the sources of `amazon-sqs-extended-client` 1.0.1 (PyPI, `sqs_extended_client/client.py`),
`awslabs/amazon-sqs-java-extended-client-lib` 2.x (`AmazonSQSExtendedClient.java`,
`AmazonSQSExtendedClientUtil.java`, `ExtendedClientConfiguration.java`) and
`awslabs/payload-offloading-java-common-lib-for-aws` (`PayloadS3Pointer.java`, `JsonDataConverter.java`):

* **Body.** A two-element JSON array: the pointer's Java class name, then the object's bucket and key.
  Java serializes `PayloadS3Pointer` with Jackson's default typing, a wrapper array without whitespace:
  `["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]`, the exact
  string the Java libraries' and Powertools for AWS Lambda (Java)'s test vectors use. The Python library
  writes the same JSON value with `json.dumps` defaults, that is with a space after each `,` and `:`. The
  two layouts are not byte-identical, so one has to be chosen: `pointer_body` writes Java's, the
  reference format. Every reader parses JSON (Python `json.loads`, Java Jackson) or tests the prefix
  `["software.amazon.payloadoffloading.PayloadS3Pointer"` (Powertools Java 1.x), so both read either
  layout. Java 1.x wrote the class `com.amazon.sqs.javamessaging.MessageS3Pointer` (`LEGACY_POINTER_CLASS`);
  Java 2.x renames it before parsing and Python never looks at the class name.
* **Attribute.** A reserved message attribute of `DataType` `Number` whose value is the payload's size in
  UTF-8 bytes: `ExtendedPayloadSize`, or the legacy `SQSLargePayloadSize`. Python writes
  `ExtendedPayloadSize` by default (`use_legacy_attribute=False`); Java 2.x writes the legacy name by
  default (`useLegacyReservedAttributeName = true`).
* **What makes a message a pointer.** The attribute, not the body: both libraries (and Powertools Java
  2.x's `LargeSQSMessageProcessor`) treat a message as a pointer exactly when its attributes hold either
  reserved name; the value and `DataType` are never read. A body that looks like a pointer without the
  attribute is delivered as it is.
* **Receiving (Python).** `receive_message` adds `ExtendedPayloadSize` (the legacy name when
  `use_legacy_attribute` is set) to `MessageAttributeNames` unless `All`, `.*` or either reserved name is
  already asked for; it needs no bucket configured. For a pointer it `json.loads` the body (a list of two
  whose second element is an object, else `SQSExtendedClientException`), `GetObject`s the named bucket and
  key, decodes the bytes as UTF-8 into `Body`, drops the reserved attribute and prefixes the receipt handle
  with the bucket and key (`-..s3BucketName..-b-..s3BucketName..--..s3Key..-k-..s3Key..-<handle>`). Other
  attributes (`message_id`) are left as they are. A missing object raises out of `receive_message` itself,
  failing the whole receive, not just that message.
* **Receiving (Java 2.x).** Only with payload support configured; asks for both reserved names, treats
  either as the mark, reads S3, removes both names and embeds the pointer in the receipt handle. A missing
  object throws, unless `ignorePayloadNotFound` is set, which deletes the message and drops it unread.
* **Deleting.** Python deletes the S3 object on `delete_message` only with `delete_payload_from_s3 = True`
  (default off) and restores the receipt handle as `handle.split('-')[-1]`, fine for real SQS handles,
  which contain no `-`. Java 2.x deletes the object by default (`cleanupS3Payload = true`), *before*
  deleting the message, so a consumer role without `s3:DeleteObject` cannot delete the message at all.
  Powertools Java's `@LargeMessage` deletes it after the handler by default (`deleteS3Object = true`).

So the outbox writes Java's body and `ExtendedPayloadSize` (`EXTENDED_PAYLOAD_SIZE_ATTRIBUTE`): the name the
Python library asks for by default, and one of the two Java asks for. Under the legacy name, a Python
consumer that lists its attribute names would never ask for it and would be handed the pointer as the body.

Consequences for the outbox
---------------------------
* The relay delivers at least once, and `outbox dlq redrive` and `requeue` send a message again; a
  consumer that deletes the object on its first delete leaves every later copy pointing at nothing, and
  both libraries then fail (or, with `ignorePayloadNotFound`, silently drop) it. Consumers should leave
  the object alone (Java `cleanupS3Payload=false`, Powertools `deleteS3Object=false`, Python's default);
  expiry is the bucket's lifecycle rule (`outbox.cdk.payload_bucket.PayloadBucket`), set past the longest
  time a copy can still be delivered (queue retention, dead-letter retention, a redrive).
* `RESERVED_ATTRIBUTES` must be refused as caller attribute names at ingest, like `message_id`. Both
  libraries take any message carrying one for a pointer, so a caller who sets one on an ordinary message
  makes every extended-client consumer fail on it, or, with a payload shaped like a pointer, read an S3
  object of the caller's choosing with the consumer's credentials. A reader of our own should also check
  that a pointer names the payload bucket.
* The object key is `S3_PAYLOAD_PREFIX` + a payload id that is new for every ingest attempt (a time-ordered
  id), never a keyed message id alone: the object is written before the transaction, so a conflicting
  replay of an `Idempotency-Key` would otherwise overwrite the accepted message's payload. An object whose
  transaction did not commit is left to the lifecycle rule.

The attribute budget
--------------------
SQS takes at most 10 message attributes per message (SQS Developer Guide, "Amazon SQS message
attributes"); message system attributes (`AWSTraceHeader`) are separate and count neither there nor in the
size (SendMessage API reference). The relay sends `message_id` plus the caller's attributes, at most
`MAX_CALLER_ATTRIBUTES` = 9, and the trace as `AWSTraceHeader` (`outbox.core.tracing`, `relay.sender`): 10.
A claim-checked message also carries `ExtendedPayloadSize`, so its caller keeps 8. Ingest knows the
payload's size when it checks the attributes, so it can apply 8 exactly when the payload goes to S3:
`attributes_left_for_caller`. (The libraries' own "at most 9 besides the reserved one" check runs when
*they* send; nothing counts attributes on receive.) The relay's size estimate (`Outgoing.size`) counts
each attribute's name, data type and value: `Number` is as long as `String`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.errors import StoreUnavailable
from outbox.core.schema import (
    EXTENDED_CLIENT_ATTRIBUTES,
    EXTENDED_PAYLOAD_SIZE_ATTRIBUTE,
    S3_PAYLOAD_PREFIX,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

RESERVED_ATTRIBUTES: Final = EXTENDED_CLIENT_ATTRIBUTES
"""Either one marks a message as a pointer to every extended-client reader: never a caller's name (ingest
refuses both, `outbox.core.validation`)."""
POINTER_CLASS: Final = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS: Final = "com.amazon.sqs.javamessaging.MessageS3Pointer"
PAYLOAD_CONTENT_TYPE: Final = "application/json"
"""Payloads are JSON text (`outbox.core.exact_json`), which is UTF-8 by definition (RFC 8259 §8.1)."""
SIZE_UNKNOWN: Final = -1
"""`PayloadObject.size` of a pointer read from a body alone, without its size attribute."""
SQS_MAX_MESSAGE_ATTRIBUTES: Final = 10
"""SQS's limit on message attributes per message; system attributes (`AWSTraceHeader`) are not counted."""
RELAY_ATTRIBUTE_COUNT: Final = 1
"""The attributes the relay adds to every message: `message_id`."""
MAX_S3_KEY_BYTES: Final = 1024

_PAYLOAD_ID: Final = re.compile(r"[A-Za-z0-9._/\-]+")
"""The characters the Java library allows in a key prefix (`[a-zA-Z0-9./_-]`), safe in a URI and a key."""
_SIZE: Final = re.compile(r"[0-9]+")
_URI_SCHEME: Final = "s3://"
_MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES: Final = frozenset({"AccessDenied", "403", "Forbidden"})
"""`GetObject` says `AccessDenied`; `HeadObject`, whose 403 has no body, the bare status."""
_NOT_FOUND_STATUS: Final = 404
_FORBIDDEN_STATUS: Final = 403
_TRANSIENT_CODES: Final = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
_THROTTLED_STATUS: Final = 429
_SERVER_ERROR_STATUS: Final = 500


@dataclass(frozen=True, slots=True)
class PayloadObject:
    """Where a payload lives in S3, and its size in UTF-8 bytes (what the size attribute says)."""

    bucket: str
    key: str
    size: int

    @property
    def uri(self) -> str:
        """`s3://bucket/key`: one string to keep in the message's item."""
        return f"{_URI_SCHEME}{self.bucket}/{self.key}"

    @classmethod
    def from_uri(cls, uri: str, size: int) -> PayloadObject:
        """The object `uri` (as `uri` writes it) names. Raises ValueError for anything else."""
        bucket, slash, key = uri.removeprefix(_URI_SCHEME).partition("/")
        if not uri.startswith(_URI_SCHEME) or not slash or not bucket or not key:
            raise ValueError(f"not an s3://bucket/key URI: {uri[:80]!r}")
        return cls(bucket=bucket, key=key, size=size)


def object_key(payload_id: str) -> str:
    """The key of a payload's object. `payload_id` must be new for each ingest attempt (see the module's
    notes) and of the characters the Java library allows in keys; `..` is refused, which also keeps the
    extended clients' receipt-handle markers (`-..s3Key..-`) out of a key."""
    if not _PAYLOAD_ID.fullmatch(payload_id) or ".." in payload_id:
        raise ValueError(f"payload id {payload_id[:80]!r} must be letters, digits, '.', '_', '/', '-'")
    key = S3_PAYLOAD_PREFIX + payload_id
    if len(key) > MAX_S3_KEY_BYTES:
        raise ValueError(f"payload id is too long for an S3 key ({len(key)} > {MAX_S3_KEY_BYTES} bytes)")
    return key


class ObjectAccessDenied(StoreUnavailable):
    """S3 answered 403 to a read of a payload object. To a reader allowed `s3:GetObject` but not
    `s3:ListBucket` (every grant of `outbox.cdk.payload_bucket`), that is also how S3 answers for a key that
    does not exist, so it means "gone, or not yours to read": never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def is_object_uri(payload_ref: str) -> bool:
    """Whether a message item's `payload_ref` names an S3 object (`PayloadObject.uri`) rather than an item
    of the Payloads table (a time-ordered id, which never starts with a URI scheme)."""
    return payload_ref.startswith(_URI_SCHEME)


def put_payload(s3: S3Client, *, bucket: str, payload_id: str, body: str) -> PayloadObject:
    """Write `body` as one object (UTF-8, `application/json`) under `object_key(payload_id)`, before the
    transaction that will name it: `write_object` of that object."""
    obj = PayloadObject(bucket=bucket, key=object_key(payload_id), size=len(body.encode("utf-8")))
    write_object(s3, obj, body)
    return obj


def write_object(s3: S3Client, obj: PayloadObject, body: str) -> None:
    """Write `body` as the object `obj` names (its key and size fixed beforehand, as ingest fixes them
    when it places the payload), UTF-8, `application/json`.

    No ACL (the bucket enforces owner ownership) and no encryption arguments: the bucket's default
    encryption applies, so the writer needs no KMS grant. botocore retries throttling, 5xx and connection
    errors first; what is left raises `StoreUnavailable` (retryable when trying again later may work), and
    the transaction must then not be attempted. A resend after a lost response writes the same bytes under
    the same key. `ValueError` when `body` is not `obj.size` bytes: the pointer would announce a wrong size.
    """
    data = body.encode("utf-8")
    if len(data) != obj.size:
        raise ValueError(f"the body is {len(data)} bytes, and {obj.uri} is to hold {obj.size}")
    try:
        s3.put_object(Bucket=obj.bucket, Key=obj.key, Body=data, ContentType=PAYLOAD_CONTENT_TYPE)
    except ClientError as exc:
        raise _unavailable("PutObject", exc) from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"S3 could not be reached: {type(exc).__name__}", retryable=True) from exc


def object_problem(s3: S3Client, obj: PayloadObject) -> str | None:
    """Why a pointer to `obj` must not be sent, or None when `HeadObject` found it, of the size the pointer
    will announce: the relay's check before it sends one (ADR 0023). A pointer to nothing is an empty
    message to its consumer, which the outbox never sends.

    `HeadObject` is authorized by `s3:GetObject`, and reads no content. A 404, or a 403 (S3's answer for a
    missing key to a role without `s3:ListBucket`, and to a role that may not read the object at all) is a
    problem to report. Any other error (throttling, 5xx and connection errors botocore's retries did not
    cure) propagates as botocore raises it: not the object's fault, so the relay's retry layer judges it and
    the message waits for a later try."""
    try:
        head = s3.head_object(Bucket=obj.bucket, Key=obj.key)
    except ClientError as exc:
        code = _error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING_CODES or status == _NOT_FOUND_STATUS:
            return f"its payload object {obj.uri} is gone (expired or deleted): not sent"
        if code in _DENIED_CODES or status == _FORBIDDEN_STATUS:
            return (
                f"its payload object {obj.uri} cannot be read (HeadObject: 403, S3's answer for an object "
                "that is gone to a role without s3:ListBucket, or for one this role may not read): not sent"
            )
        raise
    size = head.get("ContentLength")
    if size != obj.size:
        return f"its payload object {obj.uri} holds {size} bytes, not the {obj.size} recorded: not sent"
    return None


def read_payload(s3: S3Client, obj: PayloadObject) -> str | None:
    """The payload text, or None when the object does not exist (expired, or never written).

    S3 answers a missing key with 404 only to a reader allowed `s3:ListBucket` on the bucket; to one with
    `s3:GetObject` alone (what `PayloadBucket.grant_read` gives) it answers 403 `AccessDenied`, which is
    raised as `ObjectAccessDenied` (a `StoreUnavailable`, not retryable): the caller cannot tell "gone"
    from "not yours" and should say so."""
    try:
        response = s3.get_object(Bucket=obj.bucket, Key=obj.key)
        stream = response["Body"]
        try:
            data = stream.read()
        finally:
            stream.close()
    except ClientError as exc:
        if _error_code(exc) in _MISSING_CODES:
            return None
        if _error_code(exc) in _DENIED_CODES:
            raise ObjectAccessDenied(f"S3 refused the request (GetObject: {_error_code(exc)})") from exc
        raise _unavailable("GetObject", exc) from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"S3 could not be reached: {type(exc).__name__}", retryable=True) from exc
    return data.decode("utf-8")


def pointer_body(obj: PayloadObject) -> str:
    """The SQS body that points at `obj`, laid out as the Java libraries write it (compact JSON, bucket
    before key). Non-ASCII is written as is, as Jackson does; `object_key` keeps keys ASCII anyway."""
    return json.dumps(
        [POINTER_CLASS, {"s3BucketName": obj.bucket, "s3Key": obj.key}],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def pointer_attributes(obj: PayloadObject) -> dict[str, MessageAttributeValueTypeDef]:
    """The reserved size attribute, as SQS `MessageAttributes`; the relay adds `message_id` and the
    caller's attributes beside it."""
    if obj.size < 0:
        raise ValueError(f"the size of {obj.uri} is unknown; the size attribute needs it")
    return {EXTENDED_PAYLOAD_SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(obj.size)}}


def is_pointer_body(
    body: str, attributes: Mapping[str, Mapping[str, object]] | None = None
) -> PayloadObject | None:
    """The object a received message points at, or None when it is not a pointer.

    `attributes` are the message's attributes as boto3 returns them (`StringValue`) or as a Lambda SQS
    event carries them (`stringValue`). Given, they decide as the libraries decide: a pointer needs a
    reserved size attribute as well as a pointer body, and `size` is the attribute's value (one that is not
    a non-negative integer makes the answer None). Pass them whenever the message came from a queue: a
    caller's payload may look like a pointer, its attributes cannot carry a reserved name. Without them
    the body alone is parsed and `size` is `SIZE_UNKNOWN`. Both class names and any JSON layout are
    accepted."""
    size = SIZE_UNKNOWN
    if attributes is not None:
        value = next((attributes[name] for name in RESERVED_ATTRIBUTES if name in attributes), None)
        if value is None:
            return None
        text = value.get("StringValue", value.get("stringValue"))
        if not isinstance(text, str) or _SIZE.fullmatch(text) is None:
            return None
        size = int(text)
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    match parsed:
        case [str() as pointer_class, {"s3BucketName": str() as bucket, "s3Key": str() as key}] if (
            pointer_class in (POINTER_CLASS, LEGACY_POINTER_CLASS) and bucket and key
        ):
            return PayloadObject(bucket=bucket, key=key, size=size)
    return None


def attributes_left_for_caller(*, s3_bound: bool) -> int:
    """How many attributes a caller may give a message: SQS's 10 less the relay's `message_id` (9, today's
    `MAX_CALLER_ATTRIBUTES`), less the reserved size attribute when the payload goes to S3 (8)."""
    return SQS_MAX_MESSAGE_ATTRIBUTES - RELAY_ATTRIBUTE_COUNT - (1 if s3_bound else 0)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(operation: str, exc: ClientError) -> StoreUnavailable:
    code = _error_code(exc) or "Unknown"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    retryable = code in _TRANSIENT_CODES or status == _THROTTLED_STATUS or status >= _SERVER_ERROR_STATUS
    return StoreUnavailable(f"S3 refused the request ({operation}: {code})", retryable=retryable)

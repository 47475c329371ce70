"""Checks on a message request (docs/design.md §3.1): strict JSON, SQS attribute and FIFO group rules, sizes.

These apply to every way a message enters the outbox, the HTTP API and the library API alike; the
HTTP-only parts (encoding, content type, body parsing) live in `outbox.ingest.requests`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from outbox.core import exact_json
from outbox.core.errors import InvalidRequest, PayloadTooLarge
from outbox.core.schema import (
    EXTENDED_CLIENT_ATTRIBUTES,
    EXTENDED_PAYLOAD_SIZE_ATTRIBUTE,
    QUEUE_MAX_MESSAGE_BYTES,
)
from outbox.core.settings import MAX_PAYLOAD_CEILING_BYTES

MAX_NESTING_DEPTH: Final = 32
MAX_CALLER_ATTRIBUTES: Final = 9
"""SQS allows 10 message attributes; the relay adds `message_id`."""
S3_BOUND_MAX_CALLER_ATTRIBUTES: Final = MAX_CALLER_ATTRIBUTES - 1
"""A payload that goes to S3 is relayed as a pointer that carries `ExtendedPayloadSize` besides `message_id`
(`outbox.data.claim_check.attributes_left_for_caller`): 8 are left for the caller."""
RESERVED_ATTRIBUTE: Final = "message_id"
MAX_ATTRIBUTE_NAME_LENGTH: Final = 256
MAX_GROUP_ID_LENGTH: Final = 128
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 256
MESSAGE_CONTENT_LIMIT_BYTES: Final = 380_000
"""Payload plus attributes, kept under DynamoDB's 400 KB item limit with room for the item's metadata; for a
payload that goes to S3, the attributes alone (the item no longer holds the payload)."""

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+")
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]+")
# The characters SQS accepts in a body or a string attribute value.
_SQS_ILLEGAL = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """A request that passed every check: the payload as the exact SQS body, ASCII-only JSON whose
    numbers have exactly the values the caller gave (`outbox.core.exact_json`)."""

    payload_json: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    idempotency_key: str | None = None


def validate_message(
    payload: object,
    *,
    attributes: object = None,
    group_id: object = None,
    idempotency_key: str | None = None,
    fifo: bool,
    max_payload_bytes: int,
    claim_check: bool = False,
) -> MessageRequest:
    """Check a request and return it normalised, or raise `InvalidRequest` naming the field at fault.

    `payload` is None, bool, str, int, float, `decimal.Decimal`, or lists and str-keyed dicts of these.
    Every number reaches the consumer with its exact value: a `Decimal` or an `int` as written (an `int`
    past Python's int digit limit is refused: pass a `Decimal`), a `float` as its shortest round-tripping
    repr (`0.1`, which reads back as the same double, not the double's exact binary expansion).

    `claim_check`: a payload bucket is configured (`Settings.claim_check`, ADR 0023). A payload above
    `MAX_PAYLOAD_CEILING_BYTES` then goes to S3 (`travels_through_s3`): the message item no longer holds it,
    so only the attributes count against `MESSAGE_CONTENT_LIMIT_BYTES`; and its SQS message carries the
    extended client's size attribute besides `message_id`, so the caller may give one attribute less.
    Without it such a payload is refused, as the message item could not hold it.
    """
    payload_json = payload_text(payload, "payload")
    payload_bytes = len(payload_json)
    if payload_bytes > max_payload_bytes:
        raise PayloadTooLarge(
            "payload_too_large",
            f"payload is {payload_bytes} bytes as JSON; the limit is {max_payload_bytes}",
            "payload",
        )
    s3_bound = travels_through_s3(payload_bytes, claim_check=claim_check)
    checked_attributes = _check_attributes(attributes, s3_bound=s3_bound)
    checked_group = _check_group_id(group_id, fifo=fifo)
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    attributes_bytes = _attributes_size(checked_attributes)
    if s3_bound:
        if attributes_bytes > MESSAGE_CONTENT_LIMIT_BYTES:
            raise PayloadTooLarge(
                "message_too_large",
                f"attributes are {attributes_bytes} bytes; the limit is {MESSAGE_CONTENT_LIMIT_BYTES}",
                "attributes",
            )
    elif payload_bytes + attributes_bytes > min(MESSAGE_CONTENT_LIMIT_BYTES, QUEUE_MAX_MESSAGE_BYTES):
        raise PayloadTooLarge(
            "message_too_large",
            f"payload and attributes are {payload_bytes + attributes_bytes} bytes together; the limit is "
            f"{MESSAGE_CONTENT_LIMIT_BYTES}",
            "attributes",
        )
    return MessageRequest(payload_json, checked_attributes, checked_group, idempotency_key)


def travels_through_s3(payload_bytes: int, *, claim_check: bool) -> bool:
    """Whether a payload of `payload_bytes` (its ASCII JSON, so as many bytes as characters) is written to
    S3 rather than kept in DynamoDB: only above what an item holds, and only with a bucket configured. The
    one rule both validation and placement (`outbox.data.transactions.place_payload`) follow."""
    return claim_check and payload_bytes > MAX_PAYLOAD_CEILING_BYTES


def payload_text(value: object, where: str) -> str:
    """`value` as compact ASCII JSON with exact numbers, refusing what JSON cannot carry faithfully:
    NaN/Infinity, lone surrogates, non-string keys, non-JSON types, nesting deeper than
    `MAX_NESTING_DEPTH`. One walk does both, and the depth limit bounds its recursion."""
    try:
        return exact_json.dumps(value, max_depth=MAX_NESTING_DEPTH)
    except exact_json.UnfitValue as unfit:
        raise InvalidRequest(unfit.code, f"{where} {unfit.problem}", where) from None


def check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
            "Idempotency-Key",
        )


def _check_attributes(attributes: object, *, s3_bound: bool) -> dict[str, str]:
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise InvalidRequest("invalid_attributes", "attributes must be an object of strings", "attributes")
    if s3_bound and len(attributes) > S3_BOUND_MAX_CALLER_ATTRIBUTES:
        raise InvalidRequest(
            "too_many_attributes",
            f"at most {S3_BOUND_MAX_CALLER_ATTRIBUTES} attributes are allowed with a payload above "
            f"{MAX_PAYLOAD_CEILING_BYTES} bytes: it travels through S3, and its message carries the "
            f"{EXTENDED_PAYLOAD_SIZE_ATTRIBUTE} attribute that SQS Extended Client consumers read it by "
            f"(SQS allows 10 attributes, and the relay adds message_id); got {len(attributes)}",
            "attributes",
        )
    if len(attributes) > MAX_CALLER_ATTRIBUTES:
        raise InvalidRequest(
            "too_many_attributes",
            f"at most {MAX_CALLER_ATTRIBUTES} attributes are allowed; got {len(attributes)}",
            "attributes",
        )
    checked: dict[str, str] = {}
    for name, value in attributes.items():
        where = f"attributes.{name}"
        _check_attribute_name(name, where)
        if not isinstance(value, str) or not value:
            raise InvalidRequest("invalid_attribute_value", f"{where} must be a non-empty string", where)
        if _SQS_ILLEGAL.search(value):
            raise InvalidRequest(
                "invalid_attribute_value", f"{where} contains a character SQS does not accept", where
            )
        checked[name] = value
    return checked


def _check_attribute_name(name: str, where: str) -> None:
    problem = None
    if not 1 <= len(name) <= MAX_ATTRIBUTE_NAME_LENGTH or not _ATTRIBUTE_NAME.fullmatch(name):
        problem = f"must be 1-{MAX_ATTRIBUTE_NAME_LENGTH} characters of letters, digits, '_', '-', '.'"
    elif name.startswith(".") or name.endswith(".") or ".." in name:
        problem = "must not start or end with '.' or contain '..'"
    elif name.lower().startswith(("aws.", "amazon.")):
        problem = "must not start with 'AWS.' or 'Amazon.' (reserved by SQS)"
    elif name.lower() == RESERVED_ATTRIBUTE:
        problem = f"'{RESERVED_ATTRIBUTE}' is reserved: the relay sets it"
    elif name.lower() in {reserved.lower() for reserved in EXTENDED_CLIENT_ATTRIBUTES}:
        # An SQS extended-client consumer would read the body as a pointer to an S3 object.
        problem = "is reserved by the AWS SQS Extended Client libraries (S3 payload pointers)"
    if problem:
        raise InvalidRequest("invalid_attribute_name", f"attribute name {name[:64]!r} {problem}", where)


def _check_group_id(group_id: object, *, fifo: bool) -> str | None:
    if group_id is None:
        if fifo:
            raise InvalidRequest("group_id_required", "group_id is required on a FIFO queue", "group_id")
        return None
    if not fifo:
        raise InvalidRequest(
            "group_id_not_allowed", "group_id is only accepted when the queue is FIFO", "group_id"
        )
    if (
        not isinstance(group_id, str)
        or not _GROUP_ID.fullmatch(group_id)
        or len(group_id) > MAX_GROUP_ID_LENGTH
    ):
        raise InvalidRequest(
            "invalid_group_id",
            f"group_id must be 1-{MAX_GROUP_ID_LENGTH} letters, digits or ASCII punctuation",
            "group_id",
        )
    return group_id


def _attributes_size(attributes: Mapping[str, str]) -> int:
    """SQS counts each attribute's name, data type and value towards the message size."""
    return sum(len(name) + len("String") + len(value.encode("utf-8")) for name, value in attributes.items())

"""Bad input of every shape: a 4xx with a JSON error naming the problem, and nothing written."""

from __future__ import annotations

import base64
import json

import pytest

from outbox.ingest import handler as ingest
from outbox.local.events import http_api_event, local_context
from tests.conftest import Outbox, call_ingest

BIG = "x" * 262_145
DEEP = '{"payload": ' + "[" * 40 + "]" * 40 + "}"
VERY_DEEP = '{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}"

# (name, method, path, raw body, headers, expected status, expected error code)
BAD_REQUESTS = [
    ("malformed json", "POST", "/messages", '{"payload": ', {}, 400, "invalid_json"),
    ("trailing garbage", "POST", "/messages", '{"payload": 1} x', {}, 400, "invalid_json"),
    ("body is an array", "POST", "/messages", "[1, 2]", {}, 400, "invalid_body"),
    ("body is a string", "POST", "/messages", '"hello"', {}, 400, "invalid_body"),
    ("missing payload", "POST", "/messages", "{}", {}, 400, "missing_payload"),
    ("unknown member", "POST", "/messages", '{"payload": 1, "priority": 2}', {}, 400, "unknown_field"),
    ("duplicate key", "POST", "/messages", '{"payload": 1, "payload": 2}', {}, 400, "duplicate_key"),
    ("NaN", "POST", "/messages", '{"payload": NaN}', {}, 400, "invalid_number"),
    ("Infinity", "POST", "/messages", '{"payload": {"x": Infinity}}', {}, 400, "invalid_number"),
    ("-Infinity", "POST", "/messages", '{"payload": [-Infinity]}', {}, 400, "invalid_number"),
    ("lone surrogate", "POST", "/messages", '{"payload": "\\ud800"}', {}, 400, "invalid_unicode"),
    ("surrogate in key", "POST", "/messages", '{"payload": {"\\udc00": 1}}', {}, 400, "invalid_unicode"),
    ("too deep", "POST", "/messages", DEEP, {}, 400, "too_deep"),
    ("recursion-deep", "POST", "/messages", VERY_DEEP, {}, 400, "too_deep"),
    ("5000-digit integer", "POST", "/messages", '{"payload": ' + "9" * 5000 + "}", {}, 400, "invalid_json"),
    ("oversize payload", "POST", "/messages", json.dumps({"payload": BIG}), {}, 413, "payload_too_large"),
    ("oversize body", "POST", "/messages", " " * 2_100_000 + '{"payload": 1}', {}, 413, "body_too_large"),
    ("empty body", "POST", "/messages", "", {}, 400, "missing_body"),
    (
        "attributes not object",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": [1]}',
        {},
        400,
        "invalid_attributes",
    ),
    (
        "attribute not string",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"a": 1}}',
        {},
        400,
        "invalid_attribute_value",
    ),
    (
        "empty attribute",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"a": ""}}',
        {},
        400,
        "invalid_attribute_value",
    ),
    (
        "NUL in attribute",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"a": "x\\u0000"}}',
        {},
        400,
        "invalid_attribute_value",
    ),
    (
        "ten attributes",
        "POST",
        "/messages",
        json.dumps({"payload": 1, "attributes": {f"a{n}": "v" for n in range(10)}}),
        {},
        400,
        "too_many_attributes",
    ),
    (
        "reserved attribute",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"message_id": "x"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "extended client's size attribute",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"ExtendedPayloadSize": "12"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "extended client's legacy size attribute, any case",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"sqslargepayloadsize": "12"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "AWS. prefix",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"AWS.trace": "x"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "space in name",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {"a b": "x"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "leading dot",
        "POST",
        "/messages",
        '{"payload": 1, "attributes": {".a": "x"}}',
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "long name",
        "POST",
        "/messages",
        json.dumps({"payload": 1, "attributes": {"a" * 257: "x"}}),
        {},
        400,
        "invalid_attribute_name",
    ),
    (
        "payload plus attributes too big",
        "POST",
        "/messages",
        json.dumps({"payload": "p" * 250_000, "attributes": {f"a{n}": "v" * 20_000 for n in range(9)}}),
        {},
        413,
        "message_too_large",
    ),
    (
        "group on standard queue",
        "POST",
        "/messages",
        '{"payload": 1, "group_id": "g"}',
        {},
        400,
        "group_id_not_allowed",
    ),
    (
        "text content type",
        "POST",
        "/messages",
        '{"payload": 1}',
        {"Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "form content type",
        "POST",
        "/messages",
        "payload=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "empty idempotency key",
        "POST",
        "/messages",
        '{"payload": 1}',
        {"Idempotency-Key": ""},
        400,
        "invalid_idempotency_key",
    ),
    (
        "long idempotency key",
        "POST",
        "/messages",
        '{"payload": 1}',
        {"Idempotency-Key": "k" * 257},
        400,
        "invalid_idempotency_key",
    ),
    (
        "non-ASCII idempotency key",
        "POST",
        "/messages",
        '{"payload": 1}',
        {"Idempotency-Key": "clé"},
        400,
        "invalid_idempotency_key",
    ),
    ("PUT", "PUT", "/messages", '{"payload": 1}', {}, 405, "method_not_allowed"),
    ("DELETE a message", "DELETE", "/messages/abc", None, {}, 405, "method_not_allowed"),
    ("POST to a message", "POST", "/messages/abc", '{"payload": 1}', {}, 405, "method_not_allowed"),
    ("unknown path", "GET", "/nothing", None, {}, 404, "no_route"),
]


@pytest.mark.parametrize(
    ("method", "path", "raw_body", "headers", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_is_refused_and_writes_nothing(
    outbox: Outbox,
    method: str,
    path: str,
    raw_body: str | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    got_status, body, _ = call_ingest(method, path, raw_body=raw_body, headers=headers)
    assert (got_status, body["error"]["code"]) == (status, code)
    assert body["error"]["message"]
    assert outbox.counts() == (0, 0)


def test_the_catalogue_has_at_least_25_distinct_cases() -> None:
    assert len({case[0] for case in BAD_REQUESTS}) >= 25


def test_error_names_the_field_at_fault(outbox: Outbox) -> None:
    _, body, _ = call_ingest("POST", "/messages", {"payload": 1, "attributes": {"AWS.x": "y"}})
    assert body["error"]["field"] == "attributes.AWS.x"


def test_wrong_method_says_what_is_allowed(outbox: Outbox) -> None:
    status, _, headers = call_ingest("PATCH", "/messages")
    assert status == 405
    assert headers["Allow"] == "POST"


def test_bad_base64_body(outbox: Outbox) -> None:
    event_body = "not base64 at all!!"
    status, body, _ = call_ingest("POST", "/messages", raw_body=event_body, base64_body=False, headers={})
    assert status == 400  # plain text that is not JSON
    status, body, _ = _base64_call("%%%not-base64%%%")
    assert (status, body["error"]["code"]) == (400, "invalid_base64")
    assert outbox.counts() == (0, 0)


def test_base64_body_that_is_not_utf8(outbox: Outbox) -> None:
    status, body, _ = _base64_call(base64.b64encode(b'{"payload": "\xff\xfe"}').decode())
    assert (status, body["error"]["code"]) == (400, "invalid_encoding")
    assert outbox.counts() == (0, 0)


def test_valid_base64_body_is_accepted(outbox: Outbox) -> None:
    status, _, _ = _base64_call(base64.b64encode(b'{"payload": "caf\xc3\xa9"}').decode())
    assert status == 202
    assert outbox.counts() == (1, 1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"payload": 1}, "group_id_required"),
        ({"payload": 1, "group_id": "has space"}, "invalid_group_id"),
        ({"payload": 1, "group_id": "g" * 129}, "invalid_group_id"),
        ({"payload": 1, "group_id": ""}, "invalid_group_id"),
        ({"payload": 1, "group_id": 7}, "invalid_group_id"),
        ({"payload": 1, "group_id": "é"}, "invalid_group_id"),
    ],
)
def test_fifo_group_rules(fifo_outbox: Outbox, body: dict[str, object], code: str) -> None:
    status, response, _ = call_ingest("POST", "/messages", body)
    assert (status, response["error"]["code"], response["error"]["field"]) == (400, code, "group_id")
    assert fifo_outbox.counts() == (0, 0)


def test_limits_are_inclusive(outbox: Outbox) -> None:
    """Exactly at each limit is accepted: 9 attributes, 256-char names and keys, the payload maximum."""
    payload = "x" * (262_144 - 2)  # the JSON string's quotes count
    body = {"payload": payload, "attributes": {"n" * 256: "v", **{f"a{n}": "v" for n in range(8)}}}
    status, _, _ = call_ingest("POST", "/messages", body, headers={"Idempotency-Key": "~" * 256})
    assert status == 202
    assert outbox.counts() == (1, 1)


def _base64_call(encoded: str) -> tuple[int, dict[str, object], dict[str, str]]:
    event = http_api_event("POST", "/messages", body=encoded)
    event["isBase64Encoded"] = True
    response = ingest.handler(event, local_context())
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})

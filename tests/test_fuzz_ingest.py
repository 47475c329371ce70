"""Fuzzing the ingest handler (issue 6): whatever arrives, the answer is 2xx, or 4xx with a JSON `error`
object — never a 5xx for a client's request — and a 4xx writes nothing.

One set of in-process moto tables serves every example; both tables are counted before and after each
request. The two tests make 2,000+ requests together."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from outbox.core.clients import dynamodb_client, reset_clients, sqs_client
from outbox.ingest import handler as ingest
from outbox.local.events import http_api_event, local_context
from outbox.provisioning import Resources, provision

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
    "application/problem+json",
    "multipart/form-data",
]


@pytest.fixture(scope="module")
def _moto_tables() -> Iterator[Resources]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        reset_clients()
        yield provision(dynamodb_client(), sqs_client(), prefix="fuzz", fifo=False)
        reset_clients()


@pytest.fixture
def tables(_moto_tables: Resources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Resources]:
    for name, value in _moto_tables.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    ingest._settings.cache_clear()
    yield _moto_tables
    ingest._settings.cache_clear()


def _count(table: str) -> int:
    return int(dynamodb_client().scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"])


def _counts(resources: Resources) -> tuple[int, int]:
    return _count(resources.messages_table), _count(resources.outbox_table)


def _call(resources: Resources, event: dict[str, Any]) -> tuple[int, Any]:
    before = _counts(resources)
    response = ingest.handler(event, local_context())
    status = response["statusCode"]
    after = _counts(resources)
    assert status < 500, (status, response.get("body"), event)
    body = json.loads(response["body"])
    if status >= 400:
        assert 400 <= status < 500
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), dict), body
        assert isinstance(body["error"].get("code"), str)
        assert isinstance(body["error"].get("message"), str)
        assert after == before, f"a {status} wrote: {before} -> {after}"
    elif status == 202:
        assert after == (before[0] + 1, before[1] + 1)
        _empty(resources)  # moto scans copy every item: small tables keep each example in milliseconds
    else:
        assert after == before
    return status, body


def _empty(resources: Resources) -> None:
    client = dynamodb_client()
    for table, keys in (
        (resources.messages_table, ("message_id",)),
        (resources.outbox_table, ("shard", "entry_id")),
    ):
        for item in client.scan(TableName=table, ConsistentRead=True)["Items"]:
            client.delete_item(TableName=table, Key={key: item[key] for key in keys})


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
attribute_names = st.one_of(
    st.sampled_from(["origin", "message_id", "AWS.x", "Amazon.y", "a.b-c_d", "", "x" * 257]),
    st.text(max_size=12),
)
attributes = st.one_of(
    st.dictionaries(attribute_names, st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=11),
    json_values,
)
valid_ish_bodies = st.fixed_dictionaries(
    {"payload": json_values},
    optional={
        "attributes": attributes,
        "group_id": st.one_of(st.text(max_size=10), st.integers(), st.just("g" * 129)),
        "extra": json_values,
    },
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.one_of(st.sampled_from(JSON_TYPES), st.text(max_size=30)),
        "idempotency-key": st.one_of(st.text(max_size=20), st.just("k" * 257), st.just(""), st.just("key-1")),
        "x-random": st.text(max_size=10),
    },
)


@settings(FUZZ, max_examples=1100)
@given(body=valid_ish_bodies, header_values=headers, base64_body=st.booleans(), big=st.integers(0, 50))
def test_valid_ish_json_posts_are_2xx_or_4xx_without_writes(
    tables: Resources, body: dict[str, Any], header_values: dict[str, str], base64_body: bool, big: int
) -> None:
    if big == 50:  # now and then, a payload near or over the 256 KiB limit
        body = {**body, "payload": {"blob": "é" * 90_000}}
    text = json.dumps(body, allow_nan=True)
    status, _ = _call(
        tables, http_api_event("POST", "/messages", body=text, headers=header_values, base64_body=base64_body)
    )
    assert status in {200, 202, 400, 409, 413, 415}


methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]), st.text(max_size=8)
)
paths = st.one_of(
    st.sampled_from(
        ["/messages", "/messages/", "/messages/abc", "/messages/a/b", "/", "/other", "//messages"]
    ),
    st.text(max_size=30).map(lambda text: "/" + text),
)
raw_bodies = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from(
        [
            '{"payload": NaN}',
            '{"payload": "\\ud800"}',
            '{"payload": 1',
            "[]",
            "null",
            '"x"',
            '{"payload": ' * 200 + "1" + "}" * 200,
            '{"payload": 1, "payload": 2}',
            '{"payload": Infinity}',
            "\ufeff{}",
        ]
    ),
)


@settings(FUZZ, max_examples=1000)
@given(
    method=methods,
    path=paths,
    body=raw_bodies,
    header_values=headers,
    base64_body=st.booleans(),
    query=st.dictionaries(st.sampled_from(["include", "x"]), st.text(max_size=10), max_size=2),
)
def test_arbitrary_requests_are_2xx_or_4xx_without_writes(
    tables: Resources,
    method: str,
    path: str,
    body: str | bytes | None,
    header_values: dict[str, str],
    base64_body: bool,
    query: dict[str, str],
) -> None:
    event = http_api_event(
        method, path, body=body, headers=header_values, base64_body=base64_body, query=query
    )
    if isinstance(body, bytes) and not base64_body and body:
        event["body"] = base64.b64encode(body).decode()
    _call(tables, event)

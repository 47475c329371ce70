"""Reads by message id answer "no such message" for an id we never issue, before DynamoDB is asked.

A key over 2,048 bytes is not a miss for DynamoDB but a `ValidationException`, which would surface as a 500
(and count toward the API's 5xx alarm). moto answers such a `GetItem` with nothing, so these tests run with
the strict-contract hook, which refuses it as AWS does.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from outbox import cli
from outbox.core.clients import dynamodb_client
from outbox.core.domain import is_issued_message_id, keyed_message_id, new_time_ordered_id
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY
from outbox.testing.strict import install_strict_contract
from tests.conftest import Outbox, call_ingest

_ISSUED = new_time_ordered_id()
NOT_ISSUED = {
    "3,000 characters": "x" * 3000,
    "3,000 bytes of UTF-8": "é" * 1500,
    "upper case": _ISSUED.upper(),
    "no hyphens": _ISSUED.replace("-", ""),
    "braces": "{" + _ISSUED + "}",
    "one character short": _ISSUED[:-1],
    "one character long": _ISSUED + "0",
    "not hex": "g" * 8 + _ISSUED[8:],
    "a word": "does-not-exist",
    "spaces and quotes": "' or ''='",
    "trailing newline": _ISSUED + "\n",
    "a urn": f"urn:uuid:{_ISSUED}",
}


@pytest.fixture
def strict_dynamodb(outbox: Outbox) -> Iterator[Outbox]:
    remove = install_strict_contract(dynamodb_client())
    yield outbox
    remove()


def test_the_ids_we_issue_are_recognised() -> None:
    assert is_issued_message_id(new_time_ordered_id())
    assert is_issued_message_id(keyed_message_id("111122223333:user/alice", "key-1"))
    assert is_issued_message_id(str(uuid.uuid4()))  # the shape is what counts, not the version


@pytest.mark.parametrize("value", NOT_ISSUED.values(), ids=NOT_ISSUED.keys())
def test_anything_else_is_not(value: str) -> None:
    assert not is_issued_message_id(value)


def test_the_strict_hook_refuses_keys_over_dynamodb_limits_as_aws_does(strict_dynamodb: Outbox) -> None:
    """moto answers these lookups with "no item"; AWS, and the hook, with a `ValidationException`."""
    messages = strict_dynamodb.resources.messages_table
    assert "Item" not in dynamodb_client().get_item(TableName=messages, Key={MESSAGE_KEY: {"S": "x" * 2048}})
    with pytest.raises(ClientError) as caught:
        dynamodb_client().get_item(TableName=messages, Key={MESSAGE_KEY: {"S": "x" * 2049}})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Size of hashkey has exceeded the maximum size limit of2048 bytes" in str(caught.value)

    entries = strict_dynamodb.resources.outbox_table
    key = {OUTBOX_PARTITION_KEY: {"S": "0"}, OUTBOX_SORT_KEY: {"S": "e" * 1024}}
    assert "Item" not in dynamodb_client().get_item(TableName=entries, Key=key)
    with pytest.raises(ClientError, match="Aggregated size of all range keys has exceeded the size limit"):
        dynamodb_client().delete_item(TableName=entries, Key={**key, OUTBOX_SORT_KEY: {"S": "e" * 1025}})
    with pytest.raises(ClientError, match="maximum size limit of2048 bytes"):
        dynamodb_client().batch_get_item(
            RequestItems={messages: {"Keys": [{MESSAGE_KEY: {"S": "é" * 1025}}]}}  # 2,050 bytes
        )


@pytest.mark.parametrize("value", NOT_ISSUED.values(), ids=NOT_ISSUED.keys())
def test_get_with_an_id_we_never_issue_is_404_not_500(strict_dynamodb: Outbox, value: str) -> None:
    status, body, _ = call_ingest("GET", f"/messages/{value}")

    assert (status, body["error"]["code"]) == (404, "not_found")


def test_a_real_id_still_reads_with_the_strict_hook_on(strict_dynamodb: Outbox) -> None:
    _, accepted, _ = call_ingest("POST", "/messages", {"payload": 1})
    status, record, _ = call_ingest("GET", f"/messages/{accepted['message_id']}")
    assert (status, record["message_id"], record["status"]) == (200, accepted["message_id"], "PENDING")
    assert call_ingest("GET", f"/messages/{accepted['message_id'].upper()}")[0] == 404


def test_cli_status_of_an_over_long_id_is_no_such_message(
    strict_dynamodb: Outbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["outbox", "status", "x" * 3000])
    with pytest.raises(SystemExit) as exited:
        cli.main()

    assert exited.value.code == 1
    assert "no such message" in capsys.readouterr().err

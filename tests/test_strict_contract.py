"""The strict-contract hook refuses what moto accepts and AWS does not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.testing.strict import install_strict_contract
from tests.conftest import Outbox


@pytest.fixture
def strict(outbox: Outbox) -> Iterator[Outbox]:
    removers = [install_strict_contract(dynamodb_client()), install_strict_contract(sqs_client())]
    yield outbox
    for remove in removers:
        remove()


def _put(outbox: Outbox) -> dict[str, Any]:
    return {"Put": {"TableName": outbox.resources.messages_table, "Item": {"message_id": {"S": "x"}}}}


def test_a_long_client_request_token_is_refused(strict: Outbox) -> None:
    with pytest.raises(ClientError, match="ClientRequestToken"):
        dynamodb_client().transact_write_items(TransactItems=[_put(strict)], ClientRequestToken="t" * 64)
    assert strict.messages() == []
    dynamodb_client().transact_write_items(TransactItems=[_put(strict)], ClientRequestToken="t" * 36)
    assert len(strict.messages()) == 1


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ({"MessageBody": "a\x00b"}, "InvalidMessageContents"),
        ({"MessageBody": "x", "MessageDeduplicationId": "d"}, "InvalidParameterValue"),
        (
            {
                "MessageBody": "x",
                "MessageAttributes": {f"a{n}": {"DataType": "String", "StringValue": "v"} for n in range(11)},
            },
            "InvalidParameterValue",
        ),
    ],
)
def test_sqs_messages_aws_would_refuse_are_refused(strict: Outbox, entry: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as caught:
        sqs_client().send_message_batch(QueueUrl=strict.resources.queue_url, Entries=[{"Id": "0", **entry}])
    assert caught.value.response["Error"]["Code"] == code


def test_fifo_group_ids_with_spaces_and_missing_groups_are_refused(fifo_outbox: Outbox) -> None:
    install_strict_contract(sqs_client())
    url = fifo_outbox.resources.queue_url
    with pytest.raises(ClientError):
        sqs_client().send_message(
            QueueUrl=url, MessageBody="x", MessageGroupId="a b", MessageDeduplicationId="d"
        )
    with pytest.raises(ClientError):
        sqs_client().send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")


def test_malformed_batches_are_refused(strict: Outbox) -> None:
    url = strict.resources.queue_url
    with pytest.raises(ClientError, match="BatchEntryIdsNotDistinct"):
        sqs_client().send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}] * 2)
    big = "x" * 600_000
    with pytest.raises(ClientError, match="BatchRequestTooLong"):
        sqs_client().send_message_batch(
            QueueUrl=url, Entries=[{"Id": "1", "MessageBody": big}, {"Id": "2", "MessageBody": big}]
        )

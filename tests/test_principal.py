"""Who a caller is (ADR 0014): the IAM unique id, so a role or user re-created under the same name is
someone else, while one role's sessions stay one caller.

The authorizer contexts are read through Powertools' data class from events shaped as API Gateway's IAM
authorizer sends them (`requestContext.authorizer.iam` in an HTTP API payload 2.0 event).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from outbox.core.clients import dynamodb_client
from outbox.core.domain import keyed_message_id
from outbox.core.errors import MessageNotFound
from outbox.core.validation import validate_message
from outbox.data.store import MessageStore
from outbox.ingest import handler as ingest
from outbox.ingest.requests import principal_from_iam
from outbox.ingest.service import accept, message_status
from outbox.local.events import http_api_event, local_context
from tests.conftest import Outbox

ACCOUNT = "111122223333"
WRITER_ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/writer"
WRITER_V1 = "AROA3XFRBF535PLBIFPI4"
WRITER_V2 = "AROA3XFRBF53ZZZZZZZZ9"  # the role deleted and re-created: same name, new id
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


def _principal(user_arn: str, user_id: str | None) -> str:
    """What the ingest handler derives from an event with this IAM identity."""
    iam: dict[str, Any] = {"accountId": ACCOUNT, "userArn": user_arn, "callerId": user_id, "userId": user_id}
    event = APIGatewayProxyEventV2({"requestContext": {"authorizer": {"iam": iam}}})
    context = event.request_context.authorizer.iam
    return principal_from_iam(context.user_arn, context.account_id, context.user_id)


def test_a_role_recreated_under_the_same_name_is_another_caller() -> None:
    before = _principal(f"{WRITER_ROLE}/session-1", f"{WRITER_V1}:session-1")
    after = _principal(f"{WRITER_ROLE}/session-1", f"{WRITER_V2}:session-1")

    assert before == f"{ACCOUNT}:role/writer#{WRITER_V1}"
    assert after == f"{ACCOUNT}:role/writer#{WRITER_V2}"
    assert keyed_message_id(before, "order-1") != keyed_message_id(after, "order-1")


def test_the_sessions_of_one_role_are_one_caller() -> None:
    """The session name is the caller's choice (SSO sets it to the user's name): not an identity."""
    assert _principal(f"{WRITER_ROLE}/alice@example.com", f"{WRITER_V1}:alice@example.com") == _principal(
        f"{WRITER_ROLE}/bob@example.com", f"{WRITER_V1}:bob@example.com"
    )


def test_a_user_recreated_under_the_same_name_is_another_caller() -> None:
    assert _principal(ALICE, "AIDAJQABLZS4A3QDU576Q") == f"{ACCOUNT}:user/alice#AIDAJQABLZS4A3QDU576Q"
    assert _principal(ALICE, "AIDAJQABLZS4A3QDU576Q") != _principal(ALICE, "AIDAZZZZZZZZZZZZZZZZZ")


@pytest.mark.parametrize(
    ("user_arn", "user_id", "expected"),
    [
        (f"{WRITER_ROLE}/s", "LOCAL", f"{ACCOUNT}:role/writer"),  # the local emulator: no unique id
        (f"{WRITER_ROLE}/s", None, f"{ACCOUNT}:role/writer"),
        (f"{WRITER_ROLE}/s", "AIDAJQABLZS4A3QDU576Q", f"{ACCOUNT}:role/writer"),  # a user's id on a role
        (ALICE, "aroa-not-an-id", f"{ACCOUNT}:user/alice"),
        (f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, f"{ACCOUNT}:root"),  # no re-creating an account root
        (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", f"{ACCOUNT}:bob", f"{ACCOUNT}:federated-user/bob"),
    ],
)
def test_without_a_well_formed_unique_id_the_name_scopes(user_arn: str, user_id: str, expected: str) -> None:
    assert _principal(user_arn, user_id) == expected


def test_no_iam_identity_is_anonymous() -> None:
    assert principal_from_iam(None, None, None) == "anonymous"
    assert principal_from_iam("", ACCOUNT, WRITER_V1) == "anonymous"


def test_the_recreated_role_neither_replays_nor_reads_its_predecessors_message(outbox: Outbox) -> None:
    store = MessageStore(dynamodb_client(), outbox.settings.messages_table)
    old_role = _principal(f"{WRITER_ROLE}/deploy", f"{WRITER_V1}:deploy")
    new_role = _principal(f"{WRITER_ROLE}/deploy", f"{WRITER_V2}:deploy")
    request = validate_message({"n": 1}, idempotency_key="order-1", fifo=False, max_payload_bytes=1000)

    first = accept(request, store=store, settings=outbox.settings, principal=old_role)
    second = accept(request, store=store, settings=outbox.settings, principal=new_role)

    assert (first.replayed, second.replayed) == (False, False)  # same key, new caller: a new message
    assert first.message_id != second.message_id
    assert outbox.counts() == (2, 2)
    assert message_status(first.message_id, store=store, principal=old_role)["status"] == "PENDING"
    with pytest.raises(MessageNotFound):
        message_status(first.message_id, store=store, principal=new_role)


def test_the_ingest_handler_scopes_keys_by_the_unique_id(outbox: Outbox) -> None:
    def post(role_id: str) -> dict[str, Any]:
        event = http_api_event(
            "POST",
            "/messages",
            body='{"payload": 1}',
            headers={"Idempotency-Key": "order-1"},
            user_arn=f"{WRITER_ROLE}/deploy",
        )
        event["requestContext"]["authorizer"]["iam"].update(
            userId=f"{role_id}:deploy", callerId=f"{role_id}:deploy"
        )
        response = ingest.handler(event, local_context())
        return {**json.loads(response["body"]), "http": response["statusCode"]}

    first, replay, recreated = post(WRITER_V1), post(WRITER_V1), post(WRITER_V2)

    assert [first["http"], replay["http"], recreated["http"]] == [202, 200, 202]
    assert replay["message_id"] == first["message_id"] != recreated["message_id"]
    assert {item["principal"]["S"] for item in outbox.messages()} == {
        f"{ACCOUNT}:role/writer#{WRITER_V1}",
        f"{ACCOUNT}:role/writer#{WRITER_V2}",
    }

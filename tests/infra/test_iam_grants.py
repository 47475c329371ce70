"""Each role is granted exactly what its code calls (ADR 0010, revision of 2026-12-01).

Two sides, one vocabulary (`tests/infra/iam_support.py`): the (resource, action) pairs the synthesized
template grants, and the pairs the code's API calls need, recorded from botocore's events while the real
ingest handler, relay and admin commands run on in-process moto. The scenarios walk every path that makes a
different call (a replay, a send refused for good, a send that failed, a stale entry; a payload inline, one
in the Payloads table and one in S3; every operator command, a requeue that reuses a parked entry and one
that writes a new one, a skip of an orphaned entry), so a grant nothing calls fails as surely as a call
nothing grants. The pinned lists below say the same in
words a reviewer reads.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from typer.testing import CliRunner

from outbox import cli, enqueue
from outbox.cdk import names
from outbox.core.clients import dynamodb_client, sqs_client
from relay.core import Relay, RelayConfig
from tests.conftest import FAST_RETRIES, FakeClock, Outbox, call_ingest, ingest_messages, receive_all
from tests.infra.iam_support import (
    PAYLOAD_OBJECTS,
    NeedsRecorder,
    data_grants,
    resource_names,
    role_grants,
    statement_grants,
)
from tests.infra.stack_support import Synthesized

INGEST_GRANTS: Final = {
    ("Messages", "dynamodb:PutItem"),  # the message Put of the ingest transaction
    ("Messages", "dynamodb:GetItem"),  # GET /messages/{id}; a replay whose cancellation lacks the item
    ("Outbox", "dynamodb:PutItem"),  # the entry Put of the same transaction
    ("Payloads", "dynamodb:PutItem"),  # a payload stored apart, before the transaction (ADR 0023)
    ("Payloads", "dynamodb:GetItem"),  # GET /messages/{id}?include=payload of one stored apart
    (PAYLOAD_OBJECTS, "s3:PutObject"),  # a payload above an item, before the transaction (ADR 0023)
    (PAYLOAD_OBJECTS, "s3:GetObject"),  # GET /messages/{id}?include=payload of one in S3
}
RELAY_GRANTS: Final = {
    ("Outbox", "dynamodb:Query"),  # read a shard
    ("Outbox", "dynamodb:UpdateItem"),  # shard leases (UpdateItem); roll back and park (transactions)
    ("Outbox", "dynamodb:DeleteItem"),  # finalize, drop a stale entry (transactions)
    ("Outbox", "dynamodb:ConditionCheckItem"),  # the shard lease's check in every relay transaction
    ("Messages", "dynamodb:BatchGetItem"),  # fetch the messages of a batch
    ("Messages", "dynamodb:UpdateItem"),  # PENDING→QUEUED at finalize, PENDING→FAILED at poison
    ("Payloads", "dynamodb:BatchGetItem"),  # the payloads stored apart of a batch (read only)
    (PAYLOAD_OBJECTS, "s3:GetObject"),  # HeadObject: is a payload in S3 there before its pointer goes?
    ("Queue", "sqs:SendMessage"),  # SendMessageBatch
}
XRAY_GRANTS: Final = {
    # Active tracing (ADR 0021): the Lambda runtime sends the segments; X-Ray actions take only "*".
    ("*", "xray:PutTraceSegments"),
    ("*", "xray:PutTelemetryRecords"),
}
DOORBELL_GRANTS: Final = {
    # The event source mapping reads the Outbox stream with the relay's role (ADR 0017); the code never does.
    ("Outbox/stream", "dynamodb:DescribeStream"),
    ("Outbox/stream", "dynamodb:GetRecords"),
    ("Outbox/stream", "dynamodb:GetShardIterator"),
    ("Outbox/stream", "dynamodb:ListStreams"),
}
CONSUMER_GRANTS: Final = {
    ("Messages", "dynamodb:UpdateItem"),  # claim and give back (UpdateItem), complete (transaction Update)
    (PAYLOAD_OBJECTS, "s3:GetObject"),  # the payload a pointer names (the helper's or an extended client's)
}
CONSUMER_MAPPING_GRANTS: Final = {
    # The SQS event source mapping polls the queue with the consumer's role; the code never does.
    ("Queue", "sqs:ReceiveMessage"),
    ("Queue", "sqs:DeleteMessage"),
    ("Queue", "sqs:GetQueueAttributes"),
}
ADMIN_GRANTS: Final = {
    ("Messages", "dynamodb:GetItem"),  # status, requeue, skip
    ("Messages", "dynamodb:Scan"),  # stats, clear-owed-ttl
    ("Messages", "dynamodb:BatchGetItem"),  # stats: do the parked entries still have their message?
    ("Messages", "dynamodb:UpdateItem"),  # requeue, skip (transactions), clear-owed-ttl
    ("Messages/index/failed", "dynamodb:Scan"),  # requeue --all-failed
    ("Payloads", "dynamodb:GetItem"),  # status --payload of a payload stored apart
    (PAYLOAD_OBJECTS, "s3:GetObject"),  # status --payload of a payload in S3
    ("Outbox", "dynamodb:GetItem"),  # requeue reads the parked entry
    ("Outbox", "dynamodb:UpdateItem"),  # requeue: parked entry back to READY (transaction)
    ("Outbox", "dynamodb:PutItem"),  # requeue: a new entry when the parked one was skipped (transaction)
    ("Outbox", "dynamodb:DeleteItem"),  # skip (transaction)
    ("Outbox", "dynamodb:Query"),  # stats; skip finds an orphaned parked entry
    ("DeadLetterQueue", "sqs:ReceiveMessage"),  # dlq list, dlq redrive
    ("DeadLetterQueue", "sqs:DeleteMessage"),  # dlq redrive: the copy sent again
    ("DeadLetterQueue", "sqs:ChangeMessageVisibility"),  # what a dlq command read, visible again at once
}
ADMIN_COMMANDS: Final = {"status", "stats", "requeue", "skip", "clear-owed-ttl"}
"""The `outbox` commands an operator runs against a deployed stack: the operator policy's scope."""
OTHER_COMMANDS: Final = {"init", "demo", "serve", "relay"}
"""Not the operator policy's: provisioning and local runs (moto), and a relay run (`grant_relay`'s)."""
NEVER_GRANTED: Final = {"sqs:GetQueueAttributes"}
"""No code reads queue attributes (only a consumer's SQS mapping does, with the consumer's role: not in the
default stack)."""
CONDITION_CHECK_GRANTS: Final = {(names.RELAY_HANDLER, "Outbox")}
"""The only `ConditionCheck` actions are the shard lease's in the relay's transactions (ADR 0018)."""


LARGE: Final = {"blob": "x" * 2000}
"""A payload its message item cannot hold within one write unit: stored apart (ADR 0023)."""
HUGE: Final = {"blob": "x" * 400_000}
"""A payload no item holds: written to S3, relayed as a pointer (ADR 0023)."""


@pytest.fixture
def recorder() -> NeedsRecorder:
    return NeedsRecorder()


# --- what the template grants, pinned --------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["synthesized", "variant"])
def test_function_roles_grant_exactly_the_pinned_actions(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    for handler, expected in ((names.INGEST_HANDLER, INGEST_GRANTS), (names.RELAY_HANDLER, RELAY_GRANTS)):
        grants = role_grants(synth, handler)
        assert data_grants(grants) == expected, handler
        assert grants - data_grants(grants) == {
            ("LogGroup", "logs:CreateLogStream"),
            ("LogGroup", "logs:PutLogEvents"),
        } | XRAY_GRANTS | (DOORBELL_GRANTS if handler == names.RELAY_HANDLER else set())


def test_the_example_consumer_role_grants_exactly_the_pinned_actions(variant: Synthesized) -> None:
    grants = role_grants(variant, names.EXAMPLE_CONSUMER_HANDLER)
    assert data_grants(grants) == CONSUMER_GRANTS | CONSUMER_MAPPING_GRANTS
    assert (
        grants - data_grants(grants)
        == {
            ("LogGroup", "logs:CreateLogStream"),
            ("LogGroup", "logs:PutLogEvents"),
        }
        | XRAY_GRANTS
    )


def _operator_policy(synth: Synthesized) -> dict[str, Any]:
    (policy,) = synth.of_type("AWS::IAM::ManagedPolicy").values()
    properties: dict[str, Any] = policy["Properties"]
    return properties


@pytest.mark.parametrize("fixture", ["synthesized", "variant"])
def test_operator_policy_grants_exactly_the_admin_actions(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    properties = _operator_policy(synth)
    # Attached to nothing: an operator attaches it to the role the `outbox` commands run with.
    assert not {"Roles", "Users", "Groups"} & properties.keys()
    grants = statement_grants(properties["PolicyDocument"]["Statement"], resource_names(synth))
    assert grants == ADMIN_GRANTS
    (policy_id,) = synth.of_type("AWS::IAM::ManagedPolicy")
    assert synth.template["Outputs"][names.OUTPUT_OPERATOR_POLICY]["Value"] == {"Ref": policy_id}


def test_only_the_relay_checks_conditions_and_nothing_reads_queue_attributes(
    synthesized: Synthesized,
) -> None:
    documents = [
        value["Properties"]["PolicyDocument"]
        for value in synthesized.resources.values()
        if value["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
    ]
    actions = {
        action
        for document in documents
        for statement in document["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert not actions & NEVER_GRANTED
    checks = {
        (handler, resource)
        for handler in (names.INGEST_HANDLER, names.RELAY_HANDLER)
        for resource, action in role_grants(synthesized, handler)
        if action == "dynamodb:ConditionCheckItem"
    }
    assert checks == CONDITION_CHECK_GRANTS
    operator = statement_grants(
        _operator_policy(synthesized)["PolicyDocument"]["Statement"], resource_names(synthesized)
    )
    assert not any(action == "dynamodb:ConditionCheckItem" for _, action in operator)


# --- what the code calls, recorded -----------------------------------------------------------------------


def test_ingest_handler_calls_exactly_what_its_role_grants(
    s3_outbox: Outbox, recorder: NeedsRecorder, synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = s3_outbox
    # The handler builds its clients through outbox.core.clients: hand it recorded ones.
    client, s3 = recorder.client("dynamodb"), recorder.client("s3")
    monkeypatch.setattr("outbox.ingest.handler.dynamodb_client", lambda: client)
    monkeypatch.setattr("outbox.ingest.handler.s3_client", lambda: s3)
    key = {"Idempotency-Key": "order-1"}
    status, accepted, _ = call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=key)
    assert status == 202
    assert call_ingest("POST", "/messages", {"payload": {"n": 1}}, headers=key)[0] == 200  # a replay
    assert call_ingest("POST", "/messages", {"payload": {"n": 2}}, headers=key)[0] == 409  # key reused
    assert call_ingest("POST", "/messages", {"payload": {"n": 3}})[0] == 202
    status, record, _ = call_ingest("GET", f"/messages/{accepted['message_id']}")
    assert (status, record["status"]) == (200, "PENDING")
    status, large, _ = call_ingest("POST", "/messages", {"payload": LARGE})  # stored apart
    assert status == 202
    status, record, _ = call_ingest("GET", f"/messages/{large['message_id']}", query={"include": "payload"})
    assert (status, record["payload"]) == (200, LARGE)
    status, huge, _ = call_ingest("POST", "/messages", {"payload": HUGE})  # in S3
    assert status == 202
    status, record, _ = call_ingest("GET", f"/messages/{huge['message_id']}", query={"include": "payload"})
    assert (status, record["payload"]) == (200, HUGE)
    assert recorder.operations == {
        "dynamodb:TransactWriteItems",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "s3:PutObject",
        "s3:GetObject",
    }
    assert recorder.named(outbox.settings) == data_grants(role_grants(synthesized, names.INGEST_HANDLER))


class _RefusingQueue:
    """Answers `SendMessageBatch` in SQS's place while installed: entries of `rejected` messages refused
    for good (`SenderFault=true`: the relay poisons them), every other entry failed (`SenderFault=false`:
    retried, then rolled back). Nothing reaches the queue."""

    def __init__(self, client: Any, rejected: set[str]) -> None:
        self._client = client
        self._rejected = rejected
        client.meta.events.register("before-call.sqs.SendMessageBatch", self._answer)

    def remove(self) -> None:
        self._client.meta.events.unregister("before-call.sqs.SendMessageBatch", self._answer)

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        entries = json.loads(params["body"])["Entries"] if isinstance(params["body"], str | bytes) else []
        failed = []
        for entry in entries:
            message_id = entry["MessageAttributes"]["message_id"]["StringValue"]
            refused = message_id in self._rejected
            failed.append(
                {
                    "Id": entry["Id"],
                    "SenderFault": refused,
                    "Code": "InvalidParameterValue" if refused else "InternalError",
                    "Message": "made up by the test",
                }
            )
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), {"Successful": [], "Failed": failed}


@pytest.fixture
def relayed(s3_outbox: Outbox, recorder: NeedsRecorder) -> tuple[Outbox, list[str]]:
    """Eight messages through every relay path: three refused for good (FAILED, entries parked), one stale
    (QUEUED before the relay saw it: entry dropped), four failed once (rolled back) and sent by a later
    run, the last two with their payload stored apart: in the Payloads table, and in S3 (sent as a
    pointer). The relay's clients are recorded; the test's own reads and writes go through other
    clients."""
    outbox = s3_outbox
    ids = [
        *ingest_messages(outbox, 6),
        enqueue(LARGE, settings=outbox.settings).message_id,
        enqueue(HUGE, settings=outbox.settings).message_id,
    ]
    rejected, stale, retried = set(ids[:3]), ids[3], ids[4:]
    dynamodb_client().update_item(
        TableName=outbox.settings.messages_table,
        Key={"message_id": {"S": stale}},
        UpdateExpression="SET #status = :queued",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":queued": {"S": "QUEUED"}},
    )
    clock = FakeClock()
    sqs, s3 = recorder.client("sqs"), recorder.client("s3")
    relay = Relay(
        dynamodb=recorder.client("dynamodb"),
        sqs=sqs,
        settings=outbox.settings,
        clock=clock,
        retry_policy=FAST_RETRIES,
        config=RelayConfig(parallel_shards=1),  # in-process moto is not thread-safe
        s3=lambda: s3,
    )
    refusing = _RefusingQueue(sqs, rejected)
    first = relay.run(clock.monotonic() + 60)
    refusing.remove()
    assert (first.poisoned, first.stale, first.rolled_back, first.sent) == (3, 1, 4, 0), first.as_dict()
    clock.advance(3600)  # past every backoff
    second = relay.run(clock.monotonic() + 60)
    assert second.sent == 4, second.as_dict()
    statuses = {message_id: (outbox.message(message_id) or {})["status"]["S"] for message_id in ids}
    assert statuses == {
        **dict.fromkeys(rejected, "FAILED"),
        stale: "QUEUED",
        **dict.fromkeys(retried, "QUEUED"),
    }
    received = receive_all(outbox.resources.queue_url)
    assert sorted(m["MessageAttributes"]["message_id"]["StringValue"] for m in received) == sorted(retried)
    return outbox, ids


def test_relay_calls_exactly_what_its_role_grants(
    relayed: tuple[Outbox, list[str]], recorder: NeedsRecorder, synthesized: Synthesized
) -> None:
    outbox, _ = relayed
    assert recorder.operations == {
        "dynamodb:Query",
        "dynamodb:TransactWriteItems",
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",  # the shard leases; every entry write is in a transaction
        "sqs:SendMessageBatch",
        "s3:HeadObject",  # the payload in S3 is there: never its content
    }
    assert recorder.named(outbox.settings) == data_grants(role_grants(synthesized, names.RELAY_HANDLER))


def test_the_consumer_helper_calls_exactly_what_its_role_grants(
    relayed: tuple[Outbox, list[str]], recorder: NeedsRecorder, variant: Synthesized
) -> None:
    """Every path of the helper: a completion of a message whose payload is in S3 (the pointer's object
    read), a redelivered duplicate, a failure given back."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord  # noqa: PLC0415

    from outbox.consumer import Consumed, ConsumedMessage, OutboxConsumer  # noqa: PLC0415
    from outbox.local.consumer import lambda_sqs_event  # noqa: PLC0415

    outbox, _ = relayed
    fresh = NeedsRecorder()  # only the consumer's calls
    s3 = fresh.client("s3")
    consumer = OutboxConsumer(
        fresh.client("dynamodb"),
        messages_table=outbox.settings.messages_table,
        payloads_bucket=outbox.settings.payloads_bucket,
        s3=lambda: s3,
    )
    (small,) = ingest_messages(outbox, 1)
    huge = enqueue(HUGE, settings=outbox.settings).message_id
    run = Relay(
        dynamodb=dynamodb_client(),
        sqs=recorder.client("sqs"),
        settings=outbox.settings,
        clock=FakeClock(),
        retry_policy=FAST_RETRIES,
        config=RelayConfig(parallel_shards=1),
    ).run(FakeClock().monotonic() + 60)
    assert run.sent == 2, run.as_dict()
    records = {
        record["messageAttributes"]["message_id"]["stringValue"]: SQSRecord(record)
        for record in lambda_sqs_event(receive_all(outbox.resources.queue_url), "arn", "us-east-1")["Records"]
    }
    payloads: list[object] = []

    def works(message: ConsumedMessage) -> None:
        payloads.append(message.payload)

    def fails(message: object) -> None:
        raise RuntimeError("no")

    assert consumer.consume(records[huge], works) is Consumed.COMPLETED
    assert payloads == [HUGE]
    assert consumer.consume(records[huge], works) is Consumed.DUPLICATE
    with pytest.raises(RuntimeError):
        consumer.consume(records[small], fails)
    assert fresh.operations == {"dynamodb:UpdateItem", "dynamodb:TransactWriteItems", "s3:GetObject"}
    assert fresh.named(outbox.settings) == CONSUMER_GRANTS


def test_every_outbox_command_is_placed() -> None:
    """A new command must be put in ADMIN_COMMANDS (and run below) or OTHER_COMMANDS, on purpose."""
    registered = {c.name or getattr(c.callback, "__name__", "") for c in cli.app.registered_commands}
    assert registered == ADMIN_COMMANDS | OTHER_COMMANDS


def test_admin_commands_call_exactly_what_the_policy_grants(
    relayed: tuple[Outbox, list[str]], synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every admin command through the CLI, as an operator runs it; each step checked in the tables."""
    outbox, ids = relayed
    recorder = NeedsRecorder()  # the commands' calls only
    client, sqs, s3 = recorder.client("dynamodb"), recorder.client("sqs"), recorder.client("s3")
    monkeypatch.setattr(cli, "dynamodb_client", lambda: client)
    monkeypatch.setattr(cli, "sqs_client", lambda: sqs)
    monkeypatch.setattr(cli, "s3_client", lambda: s3)
    monkeypatch.setenv("DLQ_URL", outbox.resources.dlq_url)
    reused, skipped, orphaned = ids[:3]
    table = outbox.settings.messages_table
    parked_entry = {mid: (outbox.message(mid) or {})["entry_id"]["S"] for mid in (reused, skipped)}
    dynamodb_client().delete_item(TableName=table, Key={"message_id": {"S": orphaned}})
    runner = CliRunner()

    def run(*args: str) -> None:
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == 0, (args, result.output, result.exception)

    def entry_states() -> dict[str, str]:
        return {entry["message_id"]["S"]: entry["state"]["S"] for entry in outbox.entries()}

    run("status", reused)
    run("status", ids[-2], "--payload")  # its payload is stored apart
    run("status", ids[-1], "--payload")  # its payload is in S3
    run("stats", "--json")  # parked entries, one of them without its message
    run("skip", orphaned)  # its message is gone: found by reading the shards
    assert orphaned not in entry_states()
    run("requeue", reused)  # the parked entry goes back to READY, in its place
    assert (outbox.message(reused) or {})["entry_id"]["S"] == parked_entry[reused]
    assert entry_states()[reused] == "READY"
    run("skip", skipped)
    assert skipped not in entry_states()
    run("requeue", "--all-failed")  # a new entry for the skipped one
    message = outbox.message(skipped) or {}
    assert (message["status"]["S"], entry_states()[skipped]) == ("PENDING", "READY")
    assert message["entry_id"]["S"] != parked_entry[skipped]
    dynamodb_client().update_item(  # as a message accepted before 0.2 carries it
        TableName=table,
        Key={"message_id": {"S": reused}},
        UpdateExpression="SET expires_at = :t",
        ExpressionAttributeValues={":t": {"N": "4102444800"}},
    )
    run("clear-owed-ttl")
    assert "expires_at" not in (outbox.message(reused) or {})
    queued = next(mid for mid in ids if (outbox.message(mid) or {}).get("status", {}).get("S") == "QUEUED")
    sqs_client().send_message(  # a consumer gave up on it: SQS moved it to the DLQ
        QueueUrl=outbox.resources.dlq_url,
        MessageBody="{}",
        MessageAttributes={"message_id": {"DataType": "String", "StringValue": queued}},
    )
    run("dlq", "list")
    assert (outbox.message(queued) or {})["status"]["S"] == "DEAD_LETTERED"
    run("dlq", "redrive", queued)  # the listing made its copy visible again
    assert (outbox.message(queued) or {})["status"]["S"] == "PENDING"
    granted = statement_grants(
        _operator_policy(synthesized)["PolicyDocument"]["Statement"], resource_names(synthesized)
    )
    assert recorder.named(outbox.settings, outbox.resources.dlq_url) == granted

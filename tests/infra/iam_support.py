"""IAM on both sides: what the code's API calls need, recorded while it runs on moto, and what the
synthesized template grants, both as (resource, action) pairs over the same resource names.

Resource names: `Messages`, `Outbox`, `Payloads`, `Queue`, `DeadLetterQueue`, `Messages/index/NAME`,
`PayloadBucket/payloads/*` for the payload objects of the S3 claim check (keys are made per message, so the
objects are named by their prefix on both sides), and `LogGroup` for a function's own log group. An ARN or
a name the template or the run does not know stays as it is (and so matches nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

import botocore.session

from outbox.core.clients import CLIENT_CONFIG
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, PAYLOAD_KEY, S3_PAYLOAD_PREFIX
from outbox.core.settings import Settings
from tests.infra.stack_support import Synthesized

Need = tuple[str, str]
"""(resource name, IAM action)."""

TRANSACT_ACTIONS: Final = {
    # The DynamoDB Developer Guide, "Using IAM with DynamoDB transactions": each action of a transaction is
    # authorized as the underlying item operation; `ConditionCheck` as `dynamodb:ConditionCheckItem`.
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
S3_OBJECT_ACTIONS: Final = {
    # The S3 User Guide, "Amazon S3 actions": `HeadObject` needs `s3:GetObject`, like `GetObject` itself.
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
}
PAYLOAD_OBJECTS: Final = f"PayloadBucket/{S3_PAYLOAD_PREFIX}*"
SQS_BATCH_ACTIONS: Final = {
    # SQS has no IAM action for its batch calls: the single-message action authorizes them.
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def required(service: str, operation: str, params: Mapping[str, Any]) -> set[Need]:
    """What one API call needs, with the table name (plus `/index/NAME`), queue URL or `bucket/key` as the
    resource."""
    if service == "s3" and "Key" in params:
        action = S3_OBJECT_ACTIONS.get(operation, f"s3:{operation}")
        return {(f"{params['Bucket']}/{params['Key']}", action)}
    if service == "dynamodb":
        return _dynamodb_required(operation, params)
    if service == "sqs":
        return {(str(params.get("QueueUrl", "*")), f"sqs:{SQS_BATCH_ACTIONS.get(operation, operation)}")}
    return {("*", f"{service}:{operation}")}


def _dynamodb_required(operation: str, params: Mapping[str, Any]) -> set[Need]:
    if operation == "TransactWriteItems":
        return {
            (body["TableName"], TRANSACT_ACTIONS[kind])
            for item in params["TransactItems"]
            for kind, body in item.items()
        }
    if operation == "TransactGetItems":
        return {(item["Get"]["TableName"], "dynamodb:GetItem") for item in params["TransactItems"]}
    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return {(table, f"dynamodb:{operation}") for table in params["RequestItems"]}
    resource = str(params.get("TableName", "*"))
    if "IndexName" in params:
        resource += f"/index/{params['IndexName']}"
    return {(resource, f"dynamodb:{operation}")}


class NeedsRecorder:
    """Records what every API call made through its clients needs. Hooked on `before-parameter-build`:
    once per API call (botocore's retries are not calls), and before any `before-call` hook that answers
    in the server's place, so a call whose answer a test makes up is recorded too."""

    def __init__(self) -> None:
        self.needs: set[Need] = set()
        self.operations: set[str] = set()
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        """A new client of `service` (honouring `AWS_ENDPOINT_URL`, like the code's own), recorded."""
        client = botocore.session.get_session().create_client(service, config=CLIENT_CONFIG)
        client.meta.events.register("before-parameter-build", self._record)
        return client

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        with self._lock:
            self.operations.add(f"{service}:{model.name}")
            self.needs |= required(service, model.name, params)

    def named(self, settings: Settings, dlq_url: str | None = None) -> set[Need]:
        """The needs with the deployed names for the settings' tables and queue (and the DLQ's URL)."""
        names = {
            settings.messages_table: "Messages",
            settings.outbox_table: "Outbox",
            **({settings.payloads_table: "Payloads"} if settings.payloads_table else {}),
            settings.queue_url: "Queue",
            **({dlq_url: "DeadLetterQueue"} if dlq_url else {}),
        }

        bucket = f"{settings.payloads_bucket}/" if settings.payloads_bucket else None

        def name(resource: str) -> str:
            if bucket and resource.startswith(bucket + S3_PAYLOAD_PREFIX):
                return PAYLOAD_OBJECTS
            table, index, rest = resource.partition("/index/")
            return f"{names.get(table, table)}{index}{rest}"

        return {(name(resource), action) for resource, action in self.needs}


# --- the template side -----------------------------------------------------------------------------------


def resource_names(synth: Synthesized) -> dict[str, str]:
    """Logical id -> resource name, for the resources the grants point at."""
    names: dict[str, str] = {}
    for key, value in synth.of_type("AWS::DynamoDB::Table").items():
        partition_key = value["Properties"]["KeySchema"][0]["AttributeName"]
        names[key] = {MESSAGE_KEY: "Messages", OUTBOX_PARTITION_KEY: "Outbox", PAYLOAD_KEY: "Payloads"}[
            partition_key
        ]
    for key, value in synth.of_type("AWS::SQS::Queue").items():
        names[key] = "Queue" if "RedrivePolicy" in value["Properties"] else "DeadLetterQueue"
    for key in synth.of_type("AWS::Logs::LogGroup"):
        names[key] = "LogGroup"
    for key in synth.of_type("AWS::S3::Bucket"):
        names[key] = "PayloadBucket"
    return names


def _resource(value: Any, names: Mapping[str, str]) -> str:
    """A statement's resource as a name: `Fn::GetAtt [id, Arn]` (a table's `StreamArn`: name/stream), or
    that joined with a literal suffix."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        name = str(names.get(logical_id, logical_id))
        return {"Arn": name, "StreamArn": f"{name}/stream"}.get(attribute, str(value))
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_resource(part, names) for part in parts)
    return str(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_grants(statements: list[dict[str, Any]], names: Mapping[str, str]) -> set[Need]:
    """Every (resource, action) an Allow statement list grants."""
    grants: set[Need] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        for resource in _as_list(statement["Resource"]):
            for action in _as_list(statement["Action"]):
                grants.add((_resource(resource, names), action))
    return grants


def role_statements(synth: Synthesized, handler: str) -> list[dict[str, Any]]:
    """The statements of every inline policy attached to the role of the function with `handler`."""
    (function,) = (
        f for f in synth.of_type("AWS::Lambda::Function").values() if f["Properties"]["Handler"] == handler
    )
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def role_grants(synth: Synthesized, handler: str) -> set[Need]:
    return statement_grants(role_statements(synth, handler), resource_names(synth))


def data_grants(grants: set[Need]) -> set[Need]:
    """Without the log-group writes and the X-Ray segments (the Lambda runtime makes those: active
    tracing, ADR 0021) and the stream reads (the event source mapping's poller makes those, with the
    function's role): what the code itself calls."""
    return {
        (resource, action)
        for resource, action in grants
        if resource != "LogGroup" and not resource.endswith("/stream") and not action.startswith("xray:")
    }

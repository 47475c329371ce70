"""The synthesized template, resource by resource: what docs/design.md §7 describes for each one, pinned."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from outbox.cdk import names
from outbox.cdk.config import PLACEHOLDER_MESSAGES_TABLE
from outbox.core.functions import DOORBELL_RUN_SECONDS
from outbox.core.schema import (
    DLQ_MAX_RECEIVE_COUNT,
    FAILED_INDEX,
    MESSAGE_KEY,
    OUTBOX_PARTITION_KEY,
    OUTBOX_STREAM_VIEW,
    PAYLOAD_GRACE_DAYS,
    PAYLOAD_KEY,
    PAYLOAD_LIFECYCLE_RULE_ID,
    QUEUE_MAX_MESSAGE_BYTES,
    S3_PAYLOAD_PREFIX,
    TTL_ATTRIBUTE,
    messages_table_definition,
    outbox_table_definition,
)
from outbox.core.settings import Settings
from tests.infra.stack_support import VARIANT_TOPIC_ARN, Synthesized


@pytest.fixture(scope="module")
def template(synthesized: Synthesized) -> Template:
    return Template.from_json(synthesized.template)


def _table(synth: Synthesized, partition_key: str) -> str:
    for key, value in synth.of_type("AWS::DynamoDB::Table").items():
        if value["Properties"]["KeySchema"][0]["AttributeName"] == partition_key:
            return key
    raise AssertionError(f"no table keyed on {partition_key}")


def _function(synth: Synthesized, handler: str) -> dict[str, Any]:
    functions = [
        f for f in synth.of_type("AWS::Lambda::Function").values() if f["Properties"]["Handler"] == handler
    ]
    assert len(functions) == 1
    return functions[0]


def _queues(synth: Synthesized) -> tuple[str, str]:
    """(queue, dead-letter queue): the queue is the one with a redrive policy."""
    queues = synth.of_type("AWS::SQS::Queue")
    (queue,) = [key for key, value in queues.items() if "RedrivePolicy" in value["Properties"]]
    (dlq,) = [key for key in queues if key != queue]
    return queue, dlq


def _arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _bucket(synth: Synthesized) -> str:
    (bucket,) = synth.of_type("AWS::S3::Bucket")
    return bucket


def _payload_objects(synth: Synthesized) -> dict[str, Any]:
    """`<bucket ARN>/payloads/*`: every grant on the payload bucket names its prefix, never the bucket."""
    return {"Fn::Join": ["", [_arn(_bucket(synth)), f"/{S3_PAYLOAD_PREFIX}*"]]}


# --- tables ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition_key", "definition"),
    [(MESSAGE_KEY, messages_table_definition), (OUTBOX_PARTITION_KEY, outbox_table_definition)],
)
def test_tables_are_built_from_the_schema_module(
    synthesized: Synthesized, partition_key: str, definition: Any
) -> None:
    properties = synthesized.resources[_table(synthesized, partition_key)]["Properties"]
    expected = definition("ignored")
    assert properties["KeySchema"] == expected["KeySchema"]
    assert properties["AttributeDefinitions"] == expected["AttributeDefinitions"]
    assert properties.get("GlobalSecondaryIndexes", []) == expected.get("GlobalSecondaryIndexes", [])
    assert properties["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"


def test_failed_index_is_sparse_keys_only(synthesized: Synthesized) -> None:
    messages = synthesized.resources[_table(synthesized, MESSAGE_KEY)]["Properties"]
    (index,) = messages["GlobalSecondaryIndexes"]
    assert index["IndexName"] == FAILED_INDEX
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_tables_are_on_demand_recoverable_encrypted_and_retained(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", 3)
    template.all_resources(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    # AWS-owned KMS key (aws/dynamodb): encrypted, and callers need no kms:* grants.
                    "SSESpecification": {"SSEEnabled": True},
                    "DeletionProtectionEnabled": True,
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_ttl_on_messages_and_payloads_only(synthesized: Synthesized) -> None:
    messages = synthesized.resources[_table(synthesized, MESSAGE_KEY)]["Properties"]
    payloads = synthesized.resources[_table(synthesized, PAYLOAD_KEY)]["Properties"]
    outbox = synthesized.resources[_table(synthesized, OUTBOX_PARTITION_KEY)]["Properties"]
    assert messages["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert payloads["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert "TimeToLiveSpecification" not in outbox  # entries are deleted when relayed


# --- the payload bucket (S3 claim check, ADR 0023) ----------------------------------------------------------


@pytest.mark.parametrize(("fixture", "policy"), [("synthesized", "Retain"), ("variant", "Delete")])
def test_one_payload_bucket_expiring_on_the_payload_horizon(
    fixture: str, policy: str, request: pytest.FixtureRequest
) -> None:
    """Objects under the prefix expire `RETENTION_DAYS` + 28 days after they were written: the horizon of
    a Payloads item (ADR 0023), past the queue's and its DLQ's 14 days each."""
    synth: Synthesized = request.getfixturevalue(fixture)
    bucket = synth.resources[_bucket(synth)]
    assert bucket["Properties"]["LifecycleConfiguration"] == {
        "Rules": [
            {
                "Id": PAYLOAD_LIFECYCLE_RULE_ID,
                "Prefix": S3_PAYLOAD_PREFIX,
                "ExpirationInDays": synth.config.settings.retention_days + PAYLOAD_GRACE_DAYS,
                "Status": "Enabled",
            }
        ]
    }
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    assert "VersioningConfiguration" not in bucket["Properties"]
    assert "LoggingConfiguration" not in bucket["Properties"]  # acknowledged in infra/nag.py (S1)
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == (policy, policy)
    (tls,) = synth.of_type("AWS::S3::BucketPolicy").values()
    (statement,) = tls["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Condition"]) == (
        "Deny",
        {"Bool": {"aws:SecureTransport": "false"}},
    )


# --- queues ----------------------------------------------------------------------------------------------


def test_queue_and_dead_letter_queue(synthesized: Synthesized, template: Template) -> None:
    template.resource_count_is("AWS::SQS::Queue", 2)
    template.all_resources_properties(
        "AWS::SQS::Queue",
        {
            "MaximumMessageSize": QUEUE_MAX_MESSAGE_BYTES,
            "MessageRetentionPeriod": 14 * 24 * 3600,
            "SqsManagedSseEnabled": True,
        },
    )
    queue, dlq = _queues(synthesized)
    assert synthesized.resources[queue]["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": _arn(dlq),
        "maxReceiveCount": DLQ_MAX_RECEIVE_COUNT,
    }
    for key in (queue, dlq):
        assert "FifoQueue" not in synthesized.resources[key]["Properties"]
        assert synthesized.resources[key]["DeletionPolicy"] == "Retain"


def test_queues_refuse_unencrypted_transport(synthesized: Synthesized) -> None:
    policies = synthesized.of_type("AWS::SQS::QueuePolicy").values()
    protected = set()
    for policy in policies:
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        protected.add(statement["Resource"]["Fn::GetAtt"][0])
    assert protected == set(synthesized.of_type("AWS::SQS::Queue"))


# --- functions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [names.INGEST_HANDLER, names.RELAY_HANDLER])
def test_functions_runtime_architecture_and_own_log_group(synthesized: Synthesized, handler: str) -> None:
    properties = _function(synthesized, handler)["Properties"]
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert synthesized.resources[log_group]["Properties"]["RetentionInDays"] == 30
    assert synthesized.resources[log_group]["DeletionPolicy"] == "Retain"


def test_only_the_two_functions_and_no_log_retention_custom_resource(synthesized: Synthesized) -> None:
    handlers = {f["Properties"]["Handler"] for f in synthesized.of_type("AWS::Lambda::Function").values()}
    assert handlers == {names.INGEST_HANDLER, names.RELAY_HANDLER}
    assert not [v for v in synthesized.resources.values() if v["Type"].startswith("Custom::")]


def test_both_functions_share_one_asset(synthesized: Synthesized) -> None:
    codes = {json_key(f["Properties"]["Code"]) for f in synthesized.of_type("AWS::Lambda::Function").values()}
    assert len(codes) == 1


def json_key(value: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(value.items()))


@pytest.mark.parametrize("handler", [names.INGEST_HANDLER, names.RELAY_HANDLER])
def test_environment_is_exactly_what_settings_reads(synthesized: Synthesized, handler: str) -> None:
    variables = _function(synthesized, handler)["Properties"]["Environment"]["Variables"]
    assert set(variables) == {field.name.upper() for field in dataclasses.fields(Settings)}
    assert variables["MESSAGES_TABLE"] == {"Ref": _table(synthesized, MESSAGE_KEY)}
    assert variables["OUTBOX_TABLE"] == {"Ref": _table(synthesized, OUTBOX_PARTITION_KEY)}
    assert variables["PAYLOADS_TABLE"] == {"Ref": _table(synthesized, PAYLOAD_KEY)}
    assert variables["PAYLOADS_BUCKET"] == {"Ref": _bucket(synthesized)}
    queue, _ = _queues(synthesized)
    assert variables["QUEUE_URL"] == {"Ref": queue}
    resolved = {
        **variables,
        "MESSAGES_TABLE": PLACEHOLDER_MESSAGES_TABLE,
        "OUTBOX_TABLE": "t",
        "PAYLOADS_TABLE": "p",
        "PAYLOADS_BUCKET": "b-payloads",
        "QUEUE_URL": "https://sqs/q",
    }
    assert Settings.from_env(resolved) == dataclasses.replace(
        synthesized.config.settings,
        messages_table=PLACEHOLDER_MESSAGES_TABLE,
        outbox_table="t",
        payloads_table="p",
        payloads_bucket="b-payloads",
        queue_url="https://sqs/q",
    )


def test_relay_timeout_fits_lease_and_schedule(synthesized: Synthesized) -> None:
    properties = _function(synthesized, names.RELAY_HANDLER)["Properties"]
    variables = properties["Environment"]["Variables"]
    assert properties["Timeout"] == 60
    assert properties["Timeout"] <= int(variables["LEASE_SECONDS"])  # a live run never holds an expired lease
    assert properties["Timeout"] <= int(variables["SCHEDULE_SECONDS"])  # runs do not pile up
    ingest = _function(synthesized, names.INGEST_HANDLER)["Properties"]
    assert ingest["Timeout"] < 30  # API Gateway's integration timeout


# --- IAM -------------------------------------------------------------------------------------------------


def _statements(synthesized: Synthesized, handler: str) -> list[dict[str, Any]]:
    role = _function(synthesized, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
    role_properties = synthesized.resources[role]["Properties"]
    assert "ManagedPolicyArns" not in role_properties
    assert "Policies" not in role_properties
    assert role_properties["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]
    policies = [
        p
        for p in synthesized.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    tracing = [s for s in statements if s in (XRAY_STATEMENT, XRAY_STATEMENT_REVERSED)]
    assert len(tracing) == 1, statements  # active tracing (ADR 0021): pinned here, once per role
    return [s for s in statements if s not in tracing]


XRAY_STATEMENT: dict[str, Any] = {
    "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
    "Effect": "Allow",
    "Resource": "*",
}
XRAY_STATEMENT_REVERSED: dict[str, Any] = {**XRAY_STATEMENT, "Action": XRAY_STATEMENT["Action"][::-1]}
"""What CDK grants a function with active tracing: the X-Ray actions take no resource but `*`."""


def _log_group_of(synthesized: Synthesized, handler: str) -> str:
    ref: str = _function(synthesized, handler)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    return ref


def test_ingest_permissions_are_pinned(synthesized: Synthesized) -> None:
    messages, outbox = _table(synthesized, MESSAGE_KEY), _table(synthesized, OUTBOX_PARTITION_KEY)
    payloads = _table(synthesized, PAYLOAD_KEY)
    assert _statements(synthesized, names.INGEST_HANDLER) == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": _arn(_log_group_of(synthesized, names.INGEST_HANDLER)),
        },
        # CDK merges the three Puts (same action) into one statement.
        {
            "Action": "dynamodb:PutItem",
            "Effect": "Allow",
            "Resource": [_arn(outbox), _arn(messages), _arn(payloads)],
        },
        # CDK merges PutObject (grant_enqueue) and GetObject (grant_read_status) on the payload prefix.
        {
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Effect": "Allow",
            "Resource": _payload_objects(synthesized),
        },
        {"Action": "dynamodb:GetItem", "Effect": "Allow", "Resource": [_arn(messages), _arn(payloads)]},
    ]


def test_relay_permissions_are_pinned(synthesized: Synthesized) -> None:
    messages, outbox = _table(synthesized, MESSAGE_KEY), _table(synthesized, OUTBOX_PARTITION_KEY)
    payloads = _table(synthesized, PAYLOAD_KEY)
    queue, _ = _queues(synthesized)
    assert _statements(synthesized, names.RELAY_HANDLER) == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": _arn(_log_group_of(synthesized, names.RELAY_HANDLER)),
        },
        {
            "Action": [
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "Effect": "Allow",
            "Resource": _arn(outbox),
        },
        {
            "Action": ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"],
            "Effect": "Allow",
            "Resource": _arn(messages),
        },
        {"Action": "dynamodb:BatchGetItem", "Effect": "Allow", "Resource": _arn(payloads)},
        # HeadObject before a pointer is sent: authorized by s3:GetObject; the relay reads no content.
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": _payload_objects(synthesized)},
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": _arn(queue)},
        {
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [outbox, "StreamArn"]},
        },
    ]


def test_operator_policy_is_pinned(synthesized: Synthesized) -> None:
    """Attached to nothing; `OperatorPolicyArn` names it (tests/infra/test_iam_grants.py: why each action)."""
    messages, outbox = _table(synthesized, MESSAGE_KEY), _table(synthesized, OUTBOX_PARTITION_KEY)
    payloads = _table(synthesized, PAYLOAD_KEY)
    (policy,) = synthesized.of_type("AWS::IAM::ManagedPolicy").values()
    assert set(policy["Properties"]) == {"Description", "Path", "PolicyDocument"}
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Action": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
            "Effect": "Allow",
            "Resource": _arn(messages),
        },
        {"Action": "dynamodb:GetItem", "Effect": "Allow", "Resource": _arn(payloads)},
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": _payload_objects(synthesized)},
        {
            "Action": "dynamodb:Scan",
            "Effect": "Allow",
            "Resource": {"Fn::Join": ["", [_arn(messages), f"/index/{FAILED_INDEX}"]]},
        },
        {
            "Action": [
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "Effect": "Allow",
            "Resource": _arn(outbox),
        },
        {
            "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
            "Effect": "Allow",
            "Resource": _arn(_queues(synthesized)[1]),
        },
    ]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def test_no_wildcard_grants_anywhere_but_the_payload_prefix(synthesized: Synthesized) -> None:
    """No Allow statement has `*` in an action, nor in a resource other than the payload bucket's prefix
    (`payloads/*`: keys are made per message at ingest); Deny-unless-TLS statements may."""
    documents = [
        value["Properties"].get(key)
        for value in synthesized.resources.values()
        for key in ("PolicyDocument", "AssumeRolePolicyDocument")
        if value["Type"].startswith(("AWS::IAM::", "AWS::SQS::", "AWS::SNS::"))
    ]
    allows = [s for doc in documents if doc for s in doc["Statement"] if s["Effect"] == "Allow"]
    assert allows
    prefix = [s for s in allows if s.get("Resource") == _payload_objects(synthesized)]
    assert len(prefix) == 3  # ingest, relay, operator policy
    for statement in allows:
        assert not [a for a in _strings(statement.get("Action")) if "*" in a], statement
        if statement in (XRAY_STATEMENT, XRAY_STATEMENT_REVERSED):
            continue  # active tracing: X-Ray's actions take only "*"
        if statement not in prefix:
            assert not [r for r in _strings(statement.get("Resource", [])) if "*" in r], statement


# --- schedule --------------------------------------------------------------------------------------------


def test_relay_schedule_never_retries(synthesized: Synthesized, template: Template) -> None:
    relay = next(
        key
        for key, f in synthesized.of_type("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == names.RELAY_HANDLER
    )
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": _arn(relay),
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0},
                    }
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": relay}, "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "FunctionName": _arn(relay), "Principal": "events.amazonaws.com"},
    )


# --- doorbell --------------------------------------------------------------------------------------------


def test_outbox_table_streams_keys_only_and_messages_table_none(synthesized: Synthesized) -> None:
    messages = synthesized.resources[_table(synthesized, MESSAGE_KEY)]["Properties"]
    outbox = synthesized.resources[_table(synthesized, OUTBOX_PARTITION_KEY)]["Properties"]
    assert (
        outbox["StreamSpecification"]
        == {"StreamViewType": OUTBOX_STREAM_VIEW}
        == {"StreamViewType": "KEYS_ONLY"}
    )
    assert "StreamSpecification" not in messages


@pytest.mark.parametrize(("fixture", "lanes", "max_age"), [("synthesized", 8, 60), ("variant", 4, 120)])
def test_doorbell_mapping_is_a_hint_that_never_blocks_its_stream(
    fixture: str, lanes: int, max_age: int, request: pytest.FixtureRequest
) -> None:
    """INSERTs only; no retry, no bisecting, no destination: a failed batch is dropped for the sweep
    (ADR 0017); one lane per outbox shard up to Lambda's 10; records older than one sweep period skipped."""
    synth: Synthesized = request.getfixturevalue(fixture)
    relay = next(
        key
        for key, f in synth.of_type("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == names.RELAY_HANDLER
    )
    (mapping,) = [
        m
        for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
        if "StreamArn" in str(m["Properties"]["EventSourceArn"])
    ]
    assert mapping["Properties"] == {
        "FunctionName": {"Ref": relay},
        "EventSourceArn": {"Fn::GetAtt": [_table(synth, OUTBOX_PARTITION_KEY), "StreamArn"]},
        "StartingPosition": "LATEST",
        "FilterCriteria": {"Filters": [{"Pattern": '{"eventName":["INSERT"]}'}]},
        "BatchSize": 1000,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": lanes,
        "MaximumRetryAttempts": 0,
        "BisectBatchOnFunctionError": False,
        "MaximumRecordAgeInSeconds": max_age,
    }
    # Lambda checks at creation that the role can read the stream: the grant comes first.
    role_policies = [
        key
        for key, policy in synth.of_type("AWS::IAM::Policy").items()
        if any(
            statement["Resource"] == mapping["Properties"]["EventSourceArn"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(role_policies) == 1
    assert role_policies[0] in mapping["DependsOn"]


def test_local_doorbell_filters_as_the_mapping_does(synthesized: Synthesized) -> None:
    """`outbox serve` and the rehearsal play the mapping with outbox/local/stream.py's defaults."""
    from outbox.local.stream import INSERTS_ONLY, MAX_BATCH, pattern_of  # noqa: PLC0415

    (mapping,) = synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
    assert pattern_of(mapping["Properties"]["FilterCriteria"]) == INSERTS_ONLY
    assert mapping["Properties"]["BatchSize"] == MAX_BATCH


# --- API -------------------------------------------------------------------------------------------------


def test_api_routes_require_iam(synthesized: Synthesized) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synthesized.of_type("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"POST /messages", "GET /messages/{message_id}"}
    assert {route["AuthorizationType"] for route in routes.values()} == {"AWS_IAM"}
    (integration,) = synthesized.of_type("AWS::ApiGatewayV2::Integration").values()
    ingest = next(
        key
        for key, f in synthesized.of_type("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == names.INGEST_HANDLER
    )
    assert integration["Properties"]["IntegrationUri"] == _arn(ingest)
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"


def test_the_api_throttle_is_a_context_setting(variant: Synthesized) -> None:
    (stage,) = variant.of_type("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": 2000,
        "ThrottlingRateLimit": 1000,
    }


def test_api_stage_logs_and_throttles(synthesized: Synthesized) -> None:
    (stage,) = synthesized.of_type("AWS::ApiGatewayV2::Stage").values()
    properties = stage["Properties"]
    assert properties["StageName"] == "$default"
    assert properties["AutoDeploy"] is True
    assert properties["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100}
    log_group = properties["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert synthesized.resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.identity.userArn" in properties["AccessLogSettings"]["Format"]


# --- alarms ----------------------------------------------------------------------------------------------


def test_alarms_watch_the_relay_metrics_queue_and_api(synthesized: Synthesized) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {
        names.OLDEST_PENDING_METRIC,
        names.POISONED_METRIC,
        "Errors",
        "ApproximateNumberOfMessagesVisible",
        "5xx",
        "IteratorAge",
    }
    relay_dimension = [{"Name": "service", "Value": names.RELAY_SERVICE}]
    oldest = alarms[names.OLDEST_PENDING_METRIC]
    assert (oldest["Namespace"], oldest["Dimensions"], oldest["Statistic"]) == (
        "Outbox",
        relay_dimension,
        "Maximum",
    )
    assert oldest["TreatMissingData"] == "breaching"  # a relay that stopped reporting is alarming
    assert oldest["Threshold"] == 600
    poisoned = alarms[names.POISONED_METRIC]
    assert (poisoned["Namespace"], poisoned["Dimensions"], poisoned["Statistic"]) == (
        "Outbox",
        relay_dimension,
        "Sum",
    )
    assert alarms["Errors"]["Namespace"] == "AWS/Lambda"
    assert alarms["ApproximateNumberOfMessagesVisible"]["Namespace"] == "AWS/SQS"
    assert alarms["5xx"]["Namespace"] == "AWS/ApiGateway"
    iterator_age = alarms["IteratorAge"]
    assert (iterator_age["Namespace"], iterator_age["Statistic"], iterator_age["Threshold"]) == (
        "AWS/Lambda",
        "Maximum",
        3 * DOORBELL_RUN_SECONDS * 1000,
    )
    assert iterator_age["TreatMissingData"] == "notBreaching"  # no traffic, no records, no datapoints
    (topic,) = synthesized.of_type("AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic}]
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_alarm_topic_refuses_unencrypted_transport(synthesized: Synthesized) -> None:
    (policy,) = synthesized.of_type("AWS::SNS::TopicPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- outputs and context switches ------------------------------------------------------------------------


def test_outputs(synthesized: Synthesized) -> None:
    assert set(synthesized.template["Outputs"]) == {
        names.OUTPUT_MESSAGES_TABLE,
        names.OUTPUT_OUTBOX_TABLE,
        names.OUTPUT_PAYLOADS_TABLE,
        names.OUTPUT_PAYLOADS_BUCKET,
        names.OUTPUT_QUEUE_URL,
        names.OUTPUT_DLQ_URL,
        names.OUTPUT_API_URL,
        names.OUTPUT_INGEST_FUNCTION,
        names.OUTPUT_RELAY_FUNCTION,
        names.OUTPUT_ALARM_TOPIC,
        names.OUTPUT_OPERATOR_POLICY,
    }
    assert synthesized.template["Outputs"][names.OUTPUT_PAYLOADS_BUCKET]["Value"] == {
        "Ref": _bucket(synthesized)
    }


def test_default_account_and_region(synthesized: Synthesized) -> None:
    code = _function(synthesized, names.RELAY_HANDLER)["Properties"]["Code"]
    assert code["S3Bucket"] == "cdk-hnb659fds-assets-123456789012-us-east-1"


def test_variant_fifo_alarms_on_late_resends(variant: Synthesized) -> None:
    (alarm,) = (
        a["Properties"]
        for a in variant.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == names.LATE_FIFO_RESEND_METRIC
    )
    assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == ("Outbox", "Sum", 1)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": names.RELAY_SERVICE}]


def test_variant_fifo_queues(variant: Synthesized) -> None:
    queues = variant.of_type("AWS::SQS::Queue").values()
    assert [q["Properties"].get("FifoQueue") for q in queues] == [True, True]
    assert all(q["DeletionPolicy"] == "Delete" for q in queues)


def test_variant_settings_reach_the_functions(variant: Synthesized) -> None:
    relay = _function(variant, names.RELAY_HANDLER)["Properties"]
    variables = relay["Environment"]["Variables"]
    assert (variables["OUTBOX_SHARDS"], variables["MAX_ATTEMPTS"], variables["SCHEDULE_SECONDS"]) == (
        "4",
        "3",
        "120",
    )
    assert relay["Timeout"] == 60  # bounded by LEASE_SECONDS, not by the longer period
    (rule,) = variant.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(2 minutes)"
    assert variant.config.region == "eu-west-1"
    assert relay["Code"]["S3Bucket"] == "cdk-hnb659fds-assets-123456789012-eu-west-1"


def test_variant_destroy_policy(variant: Synthesized) -> None:
    for table in variant.of_type("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"
        assert table["Properties"]["DeletionProtectionEnabled"] is False
    for group in variant.of_type("AWS::Logs::LogGroup").values():
        assert group["DeletionPolicy"] == "Delete"


def test_variant_uses_the_given_alarm_topic(variant: Synthesized) -> None:
    assert not variant.of_type("AWS::SNS::Topic")
    for alarm in variant.of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [VARIANT_TOPIC_ARN]


# --- the example consumer (ADR 0019) ---------------------------------------------------------------------


def test_the_example_consumer_is_off_unless_asked_for(synthesized: Synthesized) -> None:
    handlers = {f["Properties"]["Handler"] for f in synthesized.of_type("AWS::Lambda::Function").values()}
    assert names.EXAMPLE_CONSUMER_HANDLER not in handlers
    assert names.OUTPUT_EXAMPLE_CONSUMER_FUNCTION not in synthesized.template["Outputs"]


def test_the_example_consumer_reads_the_queue_with_partial_batch_responses(variant: Synthesized) -> None:
    queue, _ = _queues(variant)
    function = _function(variant, names.EXAMPLE_CONSUMER_HANDLER)
    assert function["Properties"]["Timeout"] <= 30  # the queue's visibility timeout
    mappings = [
        m
        for m in variant.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == _arn(queue)
    ]
    (mapping,) = mappings
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["BatchSize"] == 10
    assert any("Policy" in dependency for dependency in mapping["DependsOn"])
    assert names.OUTPUT_EXAMPLE_CONSUMER_FUNCTION in variant.template["Outputs"]


def test_consumer_permissions_are_pinned(variant: Synthesized) -> None:
    messages = _table(variant, MESSAGE_KEY)
    queue, _ = _queues(variant)
    assert _statements(variant, names.EXAMPLE_CONSUMER_HANDLER) == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": _arn(_log_group_of(variant, names.EXAMPLE_CONSUMER_HANDLER)),
        },
        {"Action": "dynamodb:UpdateItem", "Effect": "Allow", "Resource": _arn(messages)},
        {
            "Action": ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
            "Effect": "Allow",
            "Resource": _arn(queue),
        },
        # The pointer's object: the consumer helper (or an extended client) reads it; never deletes it.
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": _payload_objects(variant)},
    ]


def test_a_consumer_whose_timeout_outlasts_the_visibility_timeout_fails_synth() -> None:
    import aws_cdk as cdk  # noqa: PLC0415
    from aws_cdk import aws_lambda as lambda_  # noqa: PLC0415

    from outbox.cdk.construct import OutboxConstruct  # noqa: PLC0415

    stack = cdk.Stack(cdk.App())
    outbox = OutboxConstruct(stack, "Outbox", code=lambda_.Code.from_inline("def handler(e, c): pass"))
    slow = lambda_.Function(
        stack,
        "Slow",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(e, c): pass"),
        timeout=cdk.Duration.seconds(60),
    )
    with pytest.raises(ValueError, match="a timeout of 60 s exceeds the queue's 30 s visibility timeout"):
        outbox.add_consumer(slow)

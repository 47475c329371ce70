"""The operator's dashboard (ADR 0022): one CloudWatch dashboard whose body names the relay's metrics, every
function, both tables, the queue and its DLQ, the API and each alarm of the stack; and the construct on its
own, in a stack that is not ours."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from outbox.cdk import names
from outbox.cdk.construct import OutboxConstruct
from outbox.cdk.dashboard import RELAY_METRICS, OutboxDashboard
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY
from outbox.core.usage import (
    PRICE_PER_READ_UNIT,
    PRICE_PER_S3_READ_REQUEST,
    PRICE_PER_S3_WRITE_REQUEST,
    PRICE_PER_SQS_REQUEST,
    PRICE_PER_WRITE_UNIT,
)
from relay.entries import RunSummary
from relay.handler import publish_metrics
from tests.infra.stack_support import Synthesized

BOTH = pytest.mark.parametrize("fixture", ["synthesized", "variant"])


def flatten(value: Any) -> str:
    """A CloudFormation string expression as text: `Fn::Join` joined, `{"Ref": X}` as `${X}`, and
    `{"Fn::GetAtt": [X, Y]}` as `${X.Y}` (the `Fn::Sub` notation)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(flatten(part) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return f"${{{value['Ref']}}}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    raise AssertionError(f"unexpected expression in the dashboard body: {value!r}")


def _dashboard(synth: Synthesized) -> dict[str, Any]:
    (dashboard,) = synth.of_type("AWS::CloudWatch::Dashboard").values()
    properties: dict[str, Any] = dashboard["Properties"]
    return properties


def _widgets(synth: Synthesized) -> list[dict[str, Any]]:
    body = json.loads(flatten(_dashboard(synth)["DashboardBody"]))
    widgets: list[dict[str, Any]] = body["widgets"]
    return widgets


def _metrics(synth: Synthesized) -> list[list[Any]]:
    """Every metric line of every graph: `[namespace, name, dimension, value, ..., {options}]`."""
    return [
        line
        for widget in _widgets(synth)
        if widget["type"] == "metric"
        for line in widget["properties"]["metrics"]
        if isinstance(line[0], str)  # not a math expression
    ]


def _dimension_values(synth: Synthesized, namespace: str, dimension: str) -> set[str]:
    values = set()
    for line in _metrics(synth):
        if line[0] == namespace:
            pairs = [item for item in line[2:] if isinstance(item, str)]
            values |= {value for key, value in zip(pairs[::2], pairs[1::2], strict=True) if key == dimension}
    return values


def _key(synth: Synthesized, resource_type: str, predicate: Any) -> str:
    (key,) = [key for key, value in synth.of_type(resource_type).items() if predicate(value["Properties"])]
    return key


# --- the stack's dashboard -------------------------------------------------------------------------------


@BOTH
def test_one_dashboard_named_after_the_stack(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    assert _dashboard(synth)["DashboardName"] == f"{synth.config.stack_name}-Dashboard"
    assert all(widget["type"] in {"text", "metric", "alarm"} for widget in _widgets(synth))


def test_relay_metric_list_is_what_the_relay_publishes() -> None:
    published: list[str] = []

    class Sink:
        def add_metric(self, *, name: str, unit: Any, value: float) -> None:
            published.append(name)

    publish_metrics(Sink(), RunSummary(batches=1, batch_seconds_total=0.1))  # type: ignore[arg-type]
    assert sorted(published) == sorted(RELAY_METRICS)


@BOTH
def test_every_relay_metric_is_graphed(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    graphed = {
        line[1]
        for line in _metrics(synth)
        if line[0] == names.METRICS_NAMESPACE and line[2:4] == ["service", names.RELAY_SERVICE]
    }
    assert graphed == set(RELAY_METRICS)


def test_relay_metrics_statistics(synthesized: Synthesized) -> None:
    statistics = {  # a graph leaves out CloudWatch's default statistic, Average
        (line[1], line[-1].get("stat", "Average"))
        for line in _metrics(synthesized)
        if line[0] == names.METRICS_NAMESPACE
    }
    assert (names.OLDEST_PENDING_METRIC, "Maximum") in statistics
    assert ("MessagesSent", "Sum") in statistics
    assert (names.POISONED_METRIC, "Sum") in statistics
    assert ("BatchLatency", "Average") in statistics


def test_both_tables(synthesized: Synthesized) -> None:
    tables = {
        _key(synthesized, "AWS::DynamoDB::Table", lambda p, k=key: p["KeySchema"][0]["AttributeName"] == k)
        for key in (MESSAGE_KEY, OUTBOX_PARTITION_KEY)
    }
    graphed = _dimension_values(synthesized, "AWS/DynamoDB", "TableName")
    assert graphed == {f"${{{table}}}" for table in tables}
    throttles = {
        line[1] for line in _metrics(synthesized) if line[0] == "AWS/DynamoDB" and "Throttle" in line[1]
    }
    assert throttles == {"ReadThrottleEvents", "WriteThrottleEvents"}


def test_queue_and_dead_letter_queue(synthesized: Synthesized) -> None:
    queue = _key(synthesized, "AWS::SQS::Queue", lambda p: "RedrivePolicy" in p)
    (dlq,) = set(synthesized.of_type("AWS::SQS::Queue")) - {queue}
    assert _dimension_values(synthesized, "AWS/SQS", "QueueName") == {
        f"${{{queue}.QueueName}}",
        f"${{{dlq}.QueueName}}",
    }
    shown = {(line[1], line[3]) for line in _metrics(synthesized) if line[0] == "AWS/SQS"}
    for key in (queue, dlq):
        assert ("ApproximateNumberOfMessagesVisible", f"${{{key}.QueueName}}") in shown
        assert ("ApproximateAgeOfOldestMessage", f"${{{key}.QueueName}}") in shown


def test_ingest_api(synthesized: Synthesized) -> None:
    (api,) = synthesized.of_type("AWS::ApiGatewayV2::Api")
    assert _dimension_values(synthesized, "AWS/ApiGateway", "ApiId") == {f"${{{api}}}"}
    shown = {line[1] for line in _metrics(synthesized) if line[0] == "AWS/ApiGateway"}
    assert {"Count", "4xx", "5xx", "Latency"} <= shown


@pytest.mark.parametrize(
    ("fixture", "handlers"),
    [
        ("synthesized", {names.RELAY_HANDLER, names.INGEST_HANDLER}),
        ("variant", {names.RELAY_HANDLER, names.INGEST_HANDLER, names.EXAMPLE_CONSUMER_HANDLER}),
    ],
)
def test_every_function(fixture: str, handlers: set[str], request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    functions = synth.of_type("AWS::Lambda::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == handlers
    assert _dimension_values(synth, "AWS/Lambda", "FunctionName") == {f"${{{key}}}" for key in functions}
    shown = {line[1] for line in _metrics(synth) if line[0] == "AWS/Lambda"}
    assert {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"} <= shown
    # Only the relay is driven by a stream (the doorbell): its iterator age is graphed, nobody else's.
    relay = _key(synth, "AWS::Lambda::Function", lambda p: p["Handler"] == names.RELAY_HANDLER)
    iterator = {line[3] for line in _metrics(synth) if line[:2] == ["AWS/Lambda", "IteratorAge"]}
    assert iterator == {f"${{{relay}}}"}


@BOTH
def test_every_alarm_in_the_status_widget(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    (widget,) = [widget for widget in _widgets(synth) if widget["type"] == "alarm"]
    alarms = synth.of_type("AWS::CloudWatch::Alarm")
    region, account = synth.config.region, synth.config.account
    assert sorted(widget["properties"]["alarms"]) == sorted(
        f"arn:aws:cloudwatch:{region}:{account}:alarm:${{{key}}}" for key in alarms
    )
    # The facade adds no alarm of its own: those in the template are OutboxAlarms' (infra's threshold tests).
    assert alarms
    assert all(key.startswith("Alarms") for key in alarms)


def test_alarms_come_first(synthesized: Synthesized) -> None:
    types = [widget["type"] for widget in _widgets(synthesized)]
    assert types.index("alarm") < types.index("metric")


# --- the construct in a team's own stack -----------------------------------------------------------------


def test_construct_in_a_team_stack_without_api_or_alarms() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "TeamStack", env=cdk.Environment(account="111122223333", region="eu-west-1"))
    outbox = OutboxConstruct(stack, "Outbox", code=lambda_.Code.from_inline("def handler(e, c): pass"))
    dashboard = OutboxDashboard(stack, "OpsView", outbox=outbox)
    template = Template.from_stack(stack).to_json()
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert resource["Properties"]["DashboardName"] == dashboard.dashboard_name == "TeamStack-OpsView"
    body = json.loads(flatten(resource["Properties"]["DashboardBody"]))
    types = {widget["type"] for widget in body["widgets"]}
    assert "alarm" not in types
    graphed = {
        line[0]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for line in widget["properties"]["metrics"]
        if isinstance(line[0], str)
    }
    assert graphed == {names.METRICS_NAMESPACE, "AWS/Lambda", "AWS/SQS", "AWS/DynamoDB"}
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]


def test_live_cost_is_priced_with_the_benchmarks_list_prices(synthesized: Synthesized) -> None:
    """Issue #17: one graph prices the relay's reported units and requests per million messages sent, at the
    list prices the benchmark uses (`outbox.core.usage`), from the same period's sums."""
    expressions = [
        line[0]["expression"]
        for widget in _widgets(synthesized)
        if widget["type"] == "metric"
        for line in widget["properties"]["metrics"]
        if isinstance(line[0], dict) and "expression" in line[0]
    ]
    priced = [expression for expression in expressions if "/ sent" in expression]
    assert len(priced) == 2, expressions  # the relay's, and ingest + relay (the stack has the ingest API)
    for expression in priced:
        for price in (
            PRICE_PER_WRITE_UNIT,
            PRICE_PER_READ_UNIT,
            PRICE_PER_SQS_REQUEST,
            PRICE_PER_S3_WRITE_REQUEST,
            PRICE_PER_S3_READ_REQUEST,
        ):
            assert f"{price * 1_000_000:g}" in expression
    assert sum("ingest_writes" in expression for expression in priced) == 1
    statistics = {
        (line[1], line[-1].get("stat", "Average"))
        for line in _metrics(synthesized)
        if line[0] == names.METRICS_NAMESPACE
    }
    for metric in (
        names.WRITE_UNITS_METRIC,
        names.READ_UNITS_METRIC,
        names.SQS_REQUESTS_METRIC,
        names.S3_WRITE_REQUESTS_METRIC,
        names.S3_READ_REQUESTS_METRIC,
    ):
        assert (metric, "Sum") in statistics


def test_ingest_metrics_are_graphed_with_the_ingest_service(synthesized: Synthesized) -> None:
    graphed = {
        (line[1], line[-1].get("stat", "Average"))
        for line in _metrics(synthesized)
        if line[0] == names.METRICS_NAMESPACE and line[2:4] == ["service", names.INGEST_SERVICE]
    }
    assert {
        (names.ACCEPTED_METRIC, "Sum"),
        (names.WRITE_UNITS_METRIC, "Sum"),
        (names.READ_UNITS_METRIC, "Sum"),
        (names.S3_WRITE_REQUESTS_METRIC, "Sum"),
        (names.S3_READ_REQUESTS_METRIC, "Sum"),
    } <= graphed

"""The operator's dashboard: one CloudWatch dashboard with the alarms on top, the relay's own metrics, and
every function, table, queue and the API below them (ADR 0022).

Built with cdk-monitoring-constructs' `MonitoringFacade`, which knows what to graph for Lambda, DynamoDB,
SQS with its DLQ and HTTP APIs. What it cannot know is drawn here: the relay's EMF metrics (namespace
`Outbox`, dimension `service=outbox-relay`, relay/handler.py) grouped by what an operator asks of them, and
the status of alarms created elsewhere (`OutboxAlarms`, or a team's own). The facade creates no alarm of its
own: the alarms, their thresholds and their SNS topic stay in `outbox.cdk.alarms`.

`OutboxDashboard` takes the constructs it shows as arguments, so a team that composes `OutboxConstruct`
into its own stack adds it the same way the standalone stack does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import aws_cdk as cdk
import cdk_monitoring_constructs as monitoring
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from outbox.cdk.construct import OutboxConstruct
from outbox.cdk.names import (
    ACCEPTED_METRIC,
    INGEST_SERVICE,
    LATE_FIFO_RESEND_METRIC,
    METRICS_NAMESPACE,
    OLDEST_PENDING_METRIC,
    POISONED_METRIC,
    READ_UNITS_METRIC,
    RELAY_SERVICE,
    S3_READ_REQUESTS_METRIC,
    S3_WRITE_REQUESTS_METRIC,
    SQS_REQUESTS_METRIC,
    WRITE_UNITS_METRIC,
)
from outbox.core.usage import (
    PRICE_PER_READ_UNIT,
    PRICE_PER_S3_READ_REQUEST,
    PRICE_PER_S3_WRITE_REQUEST,
    PRICE_PER_SQS_REQUEST,
    PRICE_PER_WRITE_UNIT,
)

PERIOD: Final = cdk.Duration.minutes(5)
"""The alarms' period: each point holds at least one sweep's datapoint with the default one-minute schedule
(and up to a five-minute one)."""

# The relay's metrics (relay/handler.py `publish_metrics`); tests/infra/test_dashboard.py checks this list
# against what the handler publishes.
SENT_METRIC: Final = "MessagesSent"
ROLLED_BACK_METRIC: Final = "MessagesRolledBack"
SEND_RETRIES_METRIC: Final = "SendRetries"
DUPLICATES_POSSIBLE_METRIC: Final = "DuplicatesPossible"
FINALIZE_FAILED_METRIC: Final = "FinalizeFailed"
RELAY_ERRORS_METRIC: Final = "RelayErrors"
BATCH_LATENCY_METRIC: Final = "BatchLatency"
RELAY_METRICS: Final = (
    SENT_METRIC,
    ROLLED_BACK_METRIC,
    POISONED_METRIC,
    SEND_RETRIES_METRIC,
    DUPLICATES_POSSIBLE_METRIC,
    LATE_FIFO_RESEND_METRIC,
    FINALIZE_FAILED_METRIC,
    RELAY_ERRORS_METRIC,
    OLDEST_PENDING_METRIC,
    BATCH_LATENCY_METRIC,
    WRITE_UNITS_METRIC,
    READ_UNITS_METRIC,
    SQS_REQUESTS_METRIC,
    S3_WRITE_REQUESTS_METRIC,
    S3_READ_REQUESTS_METRIC,
)
"""Every metric the relay publishes, each drawn in one of the widgets below."""


class OutboxDashboard(Construct):
    """A CloudWatch dashboard for one outbox.

    `outbox`: its tables, queue, DLQ and relay. `api`: the ingest API, if there is one. `functions`: other
    functions to show, by the title their section gets (the ingest function, consumers, a team's own
    writers). `alarms`: shown in an alarm status widget at the top (`alarms_of(OutboxAlarms)` lists the
    standalone stack's). `dashboard_name`: by default the stack's name and this construct's id
    (`Outbox-Dashboard`), unique in an account and region as long as the stack's name is.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        outbox: OutboxConstruct,
        api: apigw.IHttpApi | None = None,
        functions: Mapping[str, lambda_.IFunction] | None = None,
        alarms: Sequence[cloudwatch.IAlarm] = (),
        dashboard_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.dashboard_name = dashboard_name or f"{cdk.Stack.of(self).stack_name}-{id}"
        factory = monitoring.DefaultDashboardFactory(
            self,
            "Dashboards",
            dashboard_name_prefix=self.dashboard_name,
            create_dashboard=True,
            create_summary_dashboard=False,
            create_alarm_dashboard=False,
        )
        self.facade = monitoring.MonitoringFacade(self, "Facade", dashboard_factory=factory)
        """Add more to the dashboard through it (`monitor_*`, `add_widget`)."""
        facade = self.facade
        facade.add_large_header("Outbox")
        if alarms:
            shown = [
                cloudwatch.Alarm.from_alarm_arn(self, f"Alarm{index}", _alarm_arn(self, alarm))
                for index, alarm in enumerate(alarms)
            ]
            facade.add_widget(monitoring.AlarmMatrixWidget(alarms=shown, title="Alarms"))
        facade.monitor_custom(
            human_readable_name="Relay",
            alarm_friendly_name="Relay",
            description=(
                "What the relay publishes after each run (namespace `Outbox`, `service=outbox-relay`). "
                "`outbox stats` counts statuses; `outbox requeue` / `outbox skip` handle parked entries."
            ),
            metric_groups=_relay_groups(),
        )
        facade.monitor_lambda_function(
            lambda_function=outbox.relay.function,
            human_readable_name="Relay function",
            alarm_friendly_name="RelayFunction",
            is_iterator=True,  # the doorbell: the Outbox table's stream
        )
        for title, function in (functions or {}).items():
            facade.monitor_lambda_function(
                lambda_function=function,
                human_readable_name=title,
                alarm_friendly_name=_friendly(title),
                is_iterator=False,
            )
        if api is not None:
            facade.monitor_custom(
                human_readable_name="Ingest",
                alarm_friendly_name="Ingest",
                description=(
                    "What the ingest function publishes per request (namespace `Outbox`, "
                    "`service=outbox-ingest`): messages accepted and the write and read units its calls "
                    "consumed; priced with the relay's per million messages (list prices)."
                ),
                metric_groups=_ingest_groups(),
            )
            facade.monitor_api_gateway_v2_http_api(
                api=api, human_readable_name="Ingest API", alarm_friendly_name="IngestApi"
            )
        facade.monitor_sqs_queue_with_dlq(
            queue=outbox.queue,
            dead_letter_queue=outbox.dead_letter_queue,
            human_readable_name="Outbox queue",
            alarm_friendly_name="Queue",
        )
        for title, table in (
            ("Messages table", outbox.messages_table),
            ("Outbox table", outbox.outbox_table),
        ):
            facade.monitor_dynamo_table(
                table=table, human_readable_name=title, alarm_friendly_name=_friendly(title)
            )
        dashboard = factory.created_dashboard()
        if dashboard is None:  # not with create_dashboard=True
            raise RuntimeError("cdk-monitoring-constructs created no dashboard")
        self.dashboard: cloudwatch.Dashboard = dashboard


def alarms_of(construct: Construct) -> list[cloudwatch.Alarm]:
    """The alarms directly under `construct` (e.g. `OutboxAlarms`), in the order they were created."""
    return [child for child in construct.node.children if isinstance(child, cloudwatch.Alarm)]


def _alarm_arn(scope: Construct, alarm: cloudwatch.IAlarm) -> str:
    """`alarm`'s ARN built from its name (a `Ref` for an alarm of this stack) rather than its `Arn`
    attribute: the same ARN in AWS, and a template that the local rehearsal's emulator accepts (moto
    refuses a `Fn::GetAtt` of a resource type it does not create, and it creates no alarms)."""
    return cdk.Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=alarm.alarm_name,
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        account=alarm.env.account,
        region=alarm.env.region,
    )


def _relay_groups() -> list[monitoring.CustomMetricGroup]:
    return [
        monitoring.CustomMetricGroup(
            title="Delivered",
            metrics=[_sum(SENT_METRIC, "sent"), _sum(ROLLED_BACK_METRIC, "rolled back")],
        ),
        monitoring.CustomMetricGroup(
            title="Oldest pending entry (seconds)",
            metrics=[_relay_metric(OLDEST_PENDING_METRIC, "Maximum", "oldest pending")],
        ),
        monitoring.CustomMetricGroup(
            title="Failures",
            metrics=[
                _sum(POISONED_METRIC, "poisoned (FAILED)"),
                _sum(FINALIZE_FAILED_METRIC, "finalize failed"),
                _sum(RELAY_ERRORS_METRIC, "relay errors"),
            ],
        ),
        monitoring.CustomMetricGroup(
            title="Retries and possible duplicates",
            metrics=[
                _sum(SEND_RETRIES_METRIC, "send retries"),
                _sum(DUPLICATES_POSSIBLE_METRIC, "duplicates possible"),
                _sum(LATE_FIFO_RESEND_METRIC, "FIFO resends after the dedup window"),
            ],
        ),
        monitoring.CustomMetricGroup(
            title="Live cost: relay $ per million messages",
            metrics=[_relay_dollars_per_million()],
        ),
        monitoring.CustomMetricGroup(
            title="Live cost: what the relay's calls consumed",
            metrics=[
                _sum(WRITE_UNITS_METRIC, "DynamoDB write units"),
                _sum(READ_UNITS_METRIC, "DynamoDB read units"),
                _sum(SQS_REQUESTS_METRIC, "SQS requests"),
                _sum(S3_READ_REQUESTS_METRIC, "S3 HEAD/GET requests"),
                _sum(S3_WRITE_REQUESTS_METRIC, "S3 PUT requests"),
            ],
        ),
        monitoring.CustomMetricGroup(
            title="Batch latency (ms)",
            metrics=[
                _relay_metric(BATCH_LATENCY_METRIC, "Average", "average"),
                _relay_metric(BATCH_LATENCY_METRIC, "Maximum", "maximum"),
            ],
        ),
    ]


def _ingest_groups() -> list[monitoring.CustomMetricGroup]:
    return [
        monitoring.CustomMetricGroup(
            title="Live cost: ingest + relay $ per million messages",
            metrics=[_pipeline_dollars_per_million()],
        ),
        monitoring.CustomMetricGroup(
            title="Accepted, and what ingest's calls consumed",
            metrics=[
                _metric(INGEST_SERVICE, ACCEPTED_METRIC, "Sum", "messages accepted"),
                _metric(INGEST_SERVICE, WRITE_UNITS_METRIC, "Sum", "DynamoDB write units"),
                _metric(INGEST_SERVICE, READ_UNITS_METRIC, "Sum", "DynamoDB read units"),
                _metric(INGEST_SERVICE, S3_WRITE_REQUESTS_METRIC, "Sum", "S3 PUT requests"),
                _metric(INGEST_SERVICE, S3_READ_REQUESTS_METRIC, "Sum", "S3 GET requests"),
            ],
        ),
    ]


def _pipeline_dollars_per_million() -> cloudwatch.MathExpression:
    """Ingest's and the relay's reported units and requests priced at the list prices, over the messages
    the relay sent in the same period (over a long period, about the messages accepted)."""
    expression = (
        f"IF(sent > 0, ((ingest_writes + writes) * {PRICE_PER_WRITE_UNIT * 1_000_000:g} + "
        f"(ingest_reads + reads) * {PRICE_PER_READ_UNIT * 1_000_000:g} + "
        f"requests * {PRICE_PER_SQS_REQUEST * 1_000_000:g} + "
        f"(ingest_s3_writes + s3_writes) * {PRICE_PER_S3_WRITE_REQUEST * 1_000_000:g} + "
        f"(ingest_s3_reads + s3_reads) * {PRICE_PER_S3_READ_REQUEST * 1_000_000:g}) / sent, 0)"
    )
    return cloudwatch.MathExpression(
        expression=expression,
        using_metrics={
            "ingest_writes": _metric(INGEST_SERVICE, WRITE_UNITS_METRIC, "Sum", "ingest write units"),
            "ingest_reads": _metric(INGEST_SERVICE, READ_UNITS_METRIC, "Sum", "ingest read units"),
            "writes": _sum(WRITE_UNITS_METRIC, "relay write units"),
            "reads": _sum(READ_UNITS_METRIC, "relay read units"),
            "requests": _sum(SQS_REQUESTS_METRIC, "SQS requests"),
            "ingest_s3_writes": _metric(INGEST_SERVICE, S3_WRITE_REQUESTS_METRIC, "Sum", "ingest S3 PUTs"),
            "ingest_s3_reads": _metric(INGEST_SERVICE, S3_READ_REQUESTS_METRIC, "Sum", "ingest S3 GETs"),
            "s3_writes": _sum(S3_WRITE_REQUESTS_METRIC, "relay S3 PUTs"),
            "s3_reads": _sum(S3_READ_REQUESTS_METRIC, "relay S3 HEADs"),
            "sent": _sum(SENT_METRIC, "sent"),
        },
        label="ingest + relay, $ per million messages (list prices)",
        period=PERIOD,
    )


def _metric(service: str, name: str, statistic: str, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=PERIOD,
        label=label,
    )


def _relay_dollars_per_million() -> cloudwatch.MathExpression:
    """The relay's live cost per million messages sent: its units and requests priced at the list prices
    the benchmark uses (`outbox.core.usage`), over the messages it sent in the same period. A floor: writes
    refused by a condition are billed but report no capacity (outbox/core/usage.py)."""
    per_million = 1_000_000
    expression = (
        f"IF(sent > 0, (writes * {PRICE_PER_WRITE_UNIT * per_million:g} + reads * "
        f"{PRICE_PER_READ_UNIT * per_million:g} + requests * {PRICE_PER_SQS_REQUEST * per_million:g} + "
        f"s3_writes * {PRICE_PER_S3_WRITE_REQUEST * per_million:g} + "
        f"s3_reads * {PRICE_PER_S3_READ_REQUEST * per_million:g}) / sent, 0)"  # $ per million messages
    )
    return cloudwatch.MathExpression(
        expression=expression,
        using_metrics={
            "writes": _sum(WRITE_UNITS_METRIC, "write units"),
            "reads": _sum(READ_UNITS_METRIC, "read units"),
            "requests": _sum(SQS_REQUESTS_METRIC, "SQS requests"),
            "s3_writes": _sum(S3_WRITE_REQUESTS_METRIC, "S3 PUTs"),
            "s3_reads": _sum(S3_READ_REQUESTS_METRIC, "S3 HEADs"),
            "sent": _sum(SENT_METRIC, "sent"),
        },
        label="$ per million messages (list prices)",
        period=PERIOD,
    )


def _sum(name: str, label: str) -> cloudwatch.Metric:
    return _relay_metric(name, "Sum", label)


def _relay_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
    return _metric(RELAY_SERVICE, name, statistic, label)


def _friendly(title: str) -> str:
    """A title as the facade's alarm-name prefix (letters and digits). The facade creates no alarm here (it is
    given no thresholds); the name is explicit so that none is ever derived from a resource name token."""
    words = re.split(r"[^0-9A-Za-z]+", title)
    return "".join(word[:1].upper() + word[1:] for word in words) or "Function"

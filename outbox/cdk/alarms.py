"""Alarms on what would otherwise fail quietly, each notifying one SNS topic (created, or given by ARN).

- oldest pending age: the relay publishes it every run (0 when idle), so *missing data breaches*: a relay
  that stopped running is as bad as one falling behind;
- poisoned messages: a message went FAILED (its entry parked; on FIFO its group is blocked);
- FIFO only, late resends: a resend more than 4 minutes after the first claim, which SQS may deliver
  twice (the relay fell behind or leases are too long for the schedule);
- doorbell iterator age: the stream's records wait longer than three doorbell runs before the relay
  sees them (too few lanes, throttled or failing invocations): delivery falls back to the sweep's pace;
- relay errors: a run that raised;
- dead-letter queue depth: a consumer gave up on a message;
- API 5xx: ingest failing for callers.
"""

from __future__ import annotations

from typing import Final

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from outbox.cdk.names import (
    LATE_FIFO_RESEND_METRIC,
    METRICS_NAMESPACE,
    OLDEST_PENDING_METRIC,
    POISONED_METRIC,
    RELAY_SERVICE,
)
from outbox.core.functions import DOORBELL_RUN_SECONDS

PERIOD: Final = cdk.Duration.minutes(5)
DOORBELL_LAG_ALARM_MS: Final = int(3 * DOORBELL_RUN_SECONDS * 1000)
"""A woken run holds its batch's lane for `DOORBELL_RUN_SECONDS` at most, so records that wait three times
that are not behind one long run: the mapping cannot keep up."""


class OutboxAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        relay: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue,
        api: apigw.IHttpApi | None,
        schedule_seconds: int,
        oldest_pending_threshold_seconds: int,
        topic_arn: str | None,
        fifo: bool = False,
    ) -> None:
        super().__init__(scope, id)
        self.topic: sns.ITopic = (
            sns.Topic.from_topic_arn(self, "Topic", topic_arn)
            if topic_arn
            else sns.Topic(self, "Topic", display_name="Outbox alarms", enforce_ssl=True)
        )
        # At least five minutes, and at least one relay period, so every window holds a run's datapoint.
        window = cdk.Duration.seconds(max(PERIOD.to_seconds(), schedule_seconds))
        self.oldest_pending = self._alarm(
            "OldestPendingAge",
            _relay_metric(OLDEST_PENDING_METRIC, "Maximum", window),
            threshold=oldest_pending_threshold_seconds,
            description="The oldest outbox entry waits too long, or the relay stopped reporting",
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self.poisoned = self._alarm(
            "MessagesPoisoned",
            _relay_metric(POISONED_METRIC, "Sum", PERIOD),
            threshold=1,
            description="Messages went FAILED (entries parked): see `outbox requeue` / `outbox skip`",
        )
        self.late_fifo_resends = (
            self._alarm(
                "FifoResendsAfterWindow",
                _relay_metric(LATE_FIFO_RESEND_METRIC, "Sum", PERIOD),
                threshold=1,
                description="FIFO resends came after the deduplication margin: consumers may see a copy",
            )
            if fifo
            else None
        )
        self.doorbell_lag = self._alarm(
            "DoorbellIteratorAge",
            relay.metric("IteratorAge", period=PERIOD, statistic="Maximum"),
            threshold=DOORBELL_LAG_ALARM_MS,
            description="The Outbox stream's doorbell falls behind: delivery waits for the scheduled sweep",
        )
        self.relay_errors = self._alarm(
            "RelayErrors",
            relay.metric_errors(period=PERIOD, statistic="Sum"),
            threshold=1,
            description="The relay function raised or timed out",
        )
        self.dead_letters = self._alarm(
            "DeadLetters",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            threshold=1,
            description="Messages reached the dead-letter queue: a consumer could not process them",
        )
        self.api_errors = (
            self._alarm(
                "Api5xx",
                api.metric_server_error(period=PERIOD, statistic="Sum"),
                threshold=1,
                description="The ingest API answered 5xx",
            )
            if api is not None
            else None
        )

    def _alarm(
        self,
        id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=missing,
            alarm_description=description,
        )
        action = actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm


def _relay_metric(name: str, statistic: str, period: cdk.Duration) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": RELAY_SERVICE},
        statistic=statistic,
        period=period,
    )

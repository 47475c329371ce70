"""The standalone stack: composes the outbox, the ingest API, the alarms and the dashboard, and names its
outputs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.nag import acknowledge_findings
from outbox.cdk import names
from outbox.cdk.alarms import OutboxAlarms
from outbox.cdk.bundling import lambda_code
from outbox.cdk.config import StackConfig
from outbox.cdk.construct import OutboxConstruct, removal_policy
from outbox.cdk.dashboard import OutboxDashboard, alarms_of
from outbox.cdk.function import OutboxFunction
from outbox.cdk.ingest_api import IngestApi

EXAMPLE_CONSUMER_TIMEOUT_SECONDS = 30
"""Within the queue's 30 s visibility timeout; the example's claims last 60 s (outbox/consumer/example.py)."""
EXAMPLE_CONSUMER_MEMORY_MB = 256


class OutboxStack(cdk.Stack):
    def __init__(self, scope: Construct, *, config: StackConfig, code: lambda_.Code | None = None) -> None:
        super().__init__(
            scope,
            config.stack_name,
            env=cdk.Environment(account=config.account, region=config.region),
            description="Transactional outbox: DynamoDB + SQS, ingest API and scheduled relay",
        )
        self.config = config
        code = code or lambda_code()  # one asset, shared by both functions
        self.outbox = OutboxConstruct(self, "Outbox", config=config, code=code)
        self.ingest = IngestApi(self, "Ingest", outbox=self.outbox, code=code, config=config)
        self.alarms = OutboxAlarms(
            self,
            "Alarms",
            relay=self.outbox.relay.function,
            dead_letter_queue=self.outbox.dead_letter_queue,
            api=self.ingest.api,
            schedule_seconds=config.settings.schedule_seconds,
            oldest_pending_threshold_seconds=config.oldest_pending_alarm_seconds,
            topic_arn=config.alarm_topic_arn,
            fifo=config.settings.fifo,
        )
        functions: list[lambda_.IFunction] = [self.outbox.relay.function, self.ingest.ingest.function]
        # The dashboard's functions besides the relay, by section title.
        shown: dict[str, lambda_.IFunction] = {"Ingest function": self.ingest.ingest.function}
        self.example_consumer: OutboxFunction | None = None
        if config.example_consumer:
            self.example_consumer = OutboxFunction(
                self,
                "ExampleConsumer",
                handler=names.EXAMPLE_CONSUMER_HANDLER,
                code=code,
                environment=self.outbox.environment,
                timeout=cdk.Duration.seconds(EXAMPLE_CONSUMER_TIMEOUT_SECONDS),
                memory_size=EXAMPLE_CONSUMER_MEMORY_MB,
                description="Outbox example consumer: marks each message COMPLETED",
                log_retention_days=config.log_retention_days,
                removal_policy=removal_policy(config),
            )
            self.outbox.add_consumer(self.example_consumer.function)
            functions.append(self.example_consumer.function)
            shown["Example consumer"] = self.example_consumer.function
        # Named `<stack name>-Dashboard` (no output: the name is known before the deploy, docs/deploy.md).
        self.dashboard = OutboxDashboard(
            self,
            "Dashboard",
            outbox=self.outbox,
            api=self.ingest.api,
            functions=shown,
            alarms=alarms_of(self.alarms),
        )
        # Attached to nothing: operators attach it to the role or group they run `outbox` commands with.
        self.operator_policy = iam.ManagedPolicy(
            self,
            "OperatorPolicy",
            description="Outbox operator commands: status, stats, requeue, skip, clear-owed-ttl",
            document=iam.PolicyDocument(statements=self.outbox.admin_statements()),
        )
        for key, value, description in (
            (names.OUTPUT_MESSAGES_TABLE, self.outbox.messages_table.table_name, "Messages table"),
            (names.OUTPUT_OUTBOX_TABLE, self.outbox.outbox_table.table_name, "Outbox table"),
            (names.OUTPUT_PAYLOADS_TABLE, self.outbox.payloads_table.table_name, "Payloads stored apart"),
            (
                names.OUTPUT_PAYLOADS_BUCKET,
                self.outbox.payload_bucket.bucket_name,
                "Payloads above 350,000 bytes (S3 claim check): give consumers s3:GetObject on payloads/*",
            ),
            (names.OUTPUT_QUEUE_URL, self.outbox.queue.queue_url, "Queue the relay sends to"),
            (names.OUTPUT_DLQ_URL, self.outbox.dead_letter_queue.queue_url, "Its dead-letter queue"),
            (names.OUTPUT_API_URL, self.ingest.stage.url, "Ingest API base URL (SigV4, service execute-api)"),
            (names.OUTPUT_INGEST_FUNCTION, self.ingest.ingest.function.function_name, "Ingest function"),
            (names.OUTPUT_RELAY_FUNCTION, self.outbox.relay.function.function_name, "Relay function"),
            (names.OUTPUT_ALARM_TOPIC, self.alarms.topic.topic_arn, "SNS topic the alarms notify"),
            (
                names.OUTPUT_OPERATOR_POLICY,
                self.operator_policy.managed_policy_arn,
                "Managed policy for the outbox admin commands (attach it to an operator's role)",
            ),
        ):
            cdk.CfnOutput(self, key, value=value, description=description)
        if self.example_consumer is not None:
            cdk.CfnOutput(
                self,
                names.OUTPUT_EXAMPLE_CONSUMER_FUNCTION,
                value=self.example_consumer.function.function_name,
                description="Example consumer function (context example_consumer)",
            )
        acknowledge_findings(
            functions,
            payload_bucket=self.outbox.payload_bucket,
            policies=[self.operator_policy],
        )

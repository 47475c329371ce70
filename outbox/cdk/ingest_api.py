"""The ingest API: an HTTP API whose two routes require SigV4 (IAM) and invoke the ingest function.

IAM authorization makes the caller's identity the principal that idempotency keys and message reads are
scoped to (docs/design.md §3.2, §3.5); API Gateway refuses unsigned requests before the function runs.
"""

from __future__ import annotations

import json
from typing import Final

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from outbox.cdk.config import StackConfig
from outbox.cdk.construct import OutboxConstruct, removal_policy
from outbox.cdk.function import OutboxFunction, log_group
from outbox.cdk.names import GET_MESSAGE_ROUTE, INGEST_HANDLER, POST_MESSAGES_ROUTE

INGEST_TIMEOUT: Final = cdk.Duration.seconds(10)
"""Well under API Gateway's 30 s integration limit; the store's retries are bounded inside it."""
INGEST_MEMORY_MB: Final = 512
ACCESS_LOG_FORMAT: Final = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "user": "$context.identity.userArn",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
}


class IngestApi(Construct):
    def __init__(
        self, scope: Construct, id: str, *, outbox: OutboxConstruct, code: lambda_.Code, config: StackConfig
    ) -> None:
        super().__init__(scope, id)
        policy = removal_policy(config)
        self.ingest = OutboxFunction(
            self,
            "Ingest",
            handler=INGEST_HANDLER,
            code=code,
            environment=outbox.environment,
            timeout=INGEST_TIMEOUT,
            memory_size=INGEST_MEMORY_MB,
            description="Outbox ingest: accepts messages and reports their status",
            log_retention_days=config.log_retention_days,
            removal_policy=policy,
        )
        outbox.grant_enqueue(self.ingest.function)
        outbox.grant_read_status(self.ingest.function)
        self.api = apigw.HttpApi(
            self,
            "Api",
            description="Outbox ingest API (IAM-authorized)",
            create_default_stage=False,
            default_authorizer=authorizers.HttpIamAuthorizer(),
        )
        self.access_logs = log_group(
            self, "AccessLogs", retention_days=config.log_retention_days, removal_policy=policy
        )
        self.stage = self.api.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            # A ceiling on what one stage accepts, so a runaway client cannot spend unbounded capacity.
            throttle=apigw.ThrottleSettings(
                rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit
            ),
            access_log_settings=_AccessLogs(apigw.LogGroupLogDestination(self.access_logs)),
        )
        integration = integrations.HttpLambdaIntegration("Integration", self.ingest.function)
        self.api.add_routes(
            path=POST_MESSAGES_ROUTE, methods=[apigw.HttpMethod.POST], integration=integration
        )
        self.api.add_routes(path=GET_MESSAGE_ROUTE, methods=[apigw.HttpMethod.GET], integration=integration)


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    """One JSON line per request, with the IAM caller: who sent what, and how it ended."""

    def __init__(self, destination: apigw.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return apigw_v1.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")))

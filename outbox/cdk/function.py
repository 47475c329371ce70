"""One Python Lambda function the way this stack wants every function: its own role with nothing attached
but what is granted to it, its own log group (a resource, with retention, not the `logRetention` custom
resource), arm64, the shared asset."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from outbox.cdk.bundling import ARCHITECTURE, RUNTIME

RETENTION: dict[int, logs.RetentionDays] = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def log_group(
    scope: Construct, id: str, *, retention_days: int, removal_policy: cdk.RemovalPolicy
) -> logs.LogGroup:
    return logs.LogGroup(scope, id, retention=RETENTION[retention_days], removal_policy=removal_policy)


class OutboxFunction(Construct):
    """A function whose role may write to its log group and do nothing else until granted more."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        code: lambda_.Code,
        environment: Mapping[str, str],
        timeout: cdk.Duration,
        description: str,
        memory_size: int = 512,
        log_retention_days: int,
        removal_policy: cdk.RemovalPolicy,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(
            self, "Logs", retention_days=log_retention_days, removal_policy=removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (least privilege: each grant is explicit)",
        )
        # Lambda creates the log streams itself; the group exists, so no logs:CreateLogGroup.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            environment=dict(environment),
            timeout=timeout,
            memory_size=memory_size,
            description=description,
            role=self.role,
            log_group=self.log_group,
            # X-Ray active tracing (ADR 0021): Lambda samples and sends the invocation's segment; the
            # handlers' Powertools Tracer adds the AWS calls. CDK grants the two X-Ray actions it needs.
            tracing=lambda_.Tracing.ACTIVE,
        )
        self.function.node.add_dependency(self.role)

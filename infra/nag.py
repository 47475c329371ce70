"""cdk-nag (AwsSolutions) findings this stack accepts, each with its reason (cdk-nag 3: CDK validations).

An acknowledgment names one rule on one construct; anything new fails `cdk synth` and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from outbox.cdk.payload_bucket import PayloadBucket

LATEST_RUNTIME_REASON: Final = (
    "Python 3.13 is the newest runtime the package supports (requires-python <3.14, tested on it); "
    "moving to 3.14 is a deliberate upgrade with its own test run, not a synth-time default."
)


ACCESS_LOGS_REASON: Final = (
    "The payload bucket holds only payloads the outbox writes, readable only by the roles granted "
    "s3:GetObject on payloads/* (ingest, relay HEAD, operators, consumers); a log bucket would be a second "
    "bucket to secure and expire for a record CloudTrail S3 data events give, when an audit trail is wanted, "
    "per object and caller. Server access logs stay off, as PayloadBucket leaves them to the stack."
)
XRAY_REASON: Final = (
    "Active tracing (ADR 0021): xray:PutTraceSegments and xray:PutTelemetryRecords, which CDK grants each "
    "traced function, take no resource narrower than * (the X-Ray actions have no resource types)."
)
XRAY_FINDING: Final = "AwsSolutions::AwsSolutions-IAM5[Resource::*]"
PAYLOAD_PREFIX_REASON: Final = (
    "The wildcard is the payload prefix of one bucket (payloads/*) and nothing wider: each payload's key is "
    "made per message at ingest, so no grant can name the objects in advance."
)


def acknowledge_findings(
    functions: Iterable[lambda_.IFunction],
    *,
    payload_bucket: PayloadBucket,
    policies: Iterable[iam.ManagedPolicy] = (),
) -> None:
    """The stack's accepted findings (lists, not the stack: this module is the stack's to use): the
    functions' runtime and their X-Ray grants (`*`, the only resource X-Ray takes); the payload bucket's
    access logs; and the `payloads/*` wildcard on every role and
    policy granted the bucket (`functions`' roles, `policies`), named finding by finding, so any other
    wildcard still fails."""
    prefix_finding = payload_prefix_finding(payload_bucket)
    for function in functions:
        cdk.Validations.of(function).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-L1", reason=LATEST_RUNTIME_REASON),
            cdk.Acknowledgment(id=XRAY_FINDING, reason=XRAY_REASON),
        )
        if function.role is not None:
            cdk.Validations.of(function.role).acknowledge(
                cdk.Acknowledgment(id=prefix_finding, reason=PAYLOAD_PREFIX_REASON)
            )
    for policy in policies:
        cdk.Validations.of(policy).acknowledge(
            cdk.Acknowledgment(id=prefix_finding, reason=PAYLOAD_PREFIX_REASON)
        )
    cdk.Validations.of(payload_bucket.bucket).acknowledge(
        cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-S1", reason=ACCESS_LOGS_REASON)
    )


def payload_prefix_finding(payload_bucket: PayloadBucket) -> str:
    """cdk-nag's id of the `payloads/*` wildcard finding (AwsSolutions-IAM5), which names the bucket by
    its logical id."""
    stack = cdk.Stack.of(payload_bucket)
    resource = payload_bucket.bucket.node.default_child
    if not isinstance(resource, cdk.CfnElement):
        raise TypeError("the payload bucket has no CloudFormation resource")
    logical_id = stack.resolve(stack.get_logical_id(resource))
    return f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{payload_bucket.prefix}*]"

"""The claim check's bucket (outbox/cdk/payload_bucket.py), synthesized in a bare stack: the bucket as
built, its expiry, the TLS-only policy, grants scoped to the payload prefix, and what cdk-nag makes of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from outbox.cdk.payload_bucket import LIFECYCLE_RULE_ID, PayloadBucket
from outbox.core.schema import S3_PAYLOAD_PREFIX

ENV = cdk.Environment(account="123456789012", region="us-east-1")
EXPIRY_DAYS = 15


def build(
    outdir: Path | None = None, *, nag: bool = False, **options: Any
) -> tuple[cdk.App, cdk.Stack, PayloadBucket]:
    """A bare stack holding the bucket, a writer role and a reader role."""
    app = cdk.App(outdir=str(outdir) if outdir else None)
    stack = cdk.Stack(app, "Claims", env=ENV)
    options.setdefault("expire_after", cdk.Duration.days(EXPIRY_DAYS))
    payloads = PayloadBucket(stack, "Payloads", **options)
    payloads.grant_write(iam.Role(stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")))
    payloads.grant_read(iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")))
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack, payloads


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = template.find_resources(resource_type)
    return found


def the_bucket(template: Template) -> tuple[str, dict[str, Any]]:
    (logical_id, bucket), *others = resources(template, "AWS::S3::Bucket").items()
    assert others == []
    return logical_id, bucket


def policy_of(template: Template, role: str) -> list[dict[str, Any]]:
    """The statements of the one inline policy attached to `role` (its logical id prefix)."""
    (policy,) = (
        resource
        for resource in resources(template, "AWS::IAM::Policy").values()
        if resource["Properties"]["Roles"][0]["Ref"].startswith(role)
    )
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


@pytest.fixture(scope="module")
def template() -> Template:
    _, stack, _ = build()
    return Template.from_stack(stack)


def test_the_bucket_is_private_encrypted_owner_enforced_and_unversioned(template: Template) -> None:
    _, bucket = the_bucket(template)

    assert bucket["Properties"] == {
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        },
        "LifecycleConfiguration": bucket["Properties"]["LifecycleConfiguration"],  # next test
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
    }  # and so no VersioningConfiguration, no LoggingConfiguration, no name (CloudFormation makes one)
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_objects_under_the_prefix_expire(template: Template) -> None:
    _, bucket = the_bucket(template)

    assert bucket["Properties"]["LifecycleConfiguration"] == {
        "Rules": [
            {
                "Id": LIFECYCLE_RULE_ID,
                "Prefix": S3_PAYLOAD_PREFIX,
                "ExpirationInDays": EXPIRY_DAYS,
                "Status": "Enabled",
            }
        ]
    }


def test_the_bucket_policy_refuses_anything_but_tls(template: Template) -> None:
    logical_id, _ = the_bucket(template)
    arn = {"Fn::GetAtt": [logical_id, "Arn"]}

    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()

    assert policy["Properties"]["Bucket"] == {"Ref": logical_id}
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": [arn, {"Fn::Join": ["", [arn, "/*"]]}],
        }
    ]


def test_grants_name_one_action_on_the_prefix_only(template: Template) -> None:
    logical_id, _ = the_bucket(template)
    prefix_objects = {"Fn::Join": ["", [{"Fn::GetAtt": [logical_id, "Arn"]}, f"/{S3_PAYLOAD_PREFIX}*"]]}

    assert policy_of(template, "Writer") == [
        {"Action": "s3:PutObject", "Effect": "Allow", "Resource": prefix_objects}
    ]
    assert policy_of(template, "Reader") == [
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": prefix_objects}
    ]
    assert len(resources(template, "AWS::IAM::Policy")) == 2


def test_the_removal_policy_is_the_callers() -> None:
    _, stack, _ = build(removal_policy=cdk.RemovalPolicy.DESTROY)

    _, bucket = the_bucket(Template.from_stack(stack))

    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Delete", "Delete")


def test_access_logs_go_where_the_caller_says() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "Claims", env=ENV)
    logs = s3.Bucket.from_bucket_name(stack, "Logs", "claims-access-logs")
    PayloadBucket(
        stack,
        "Payloads",
        expire_after=cdk.Duration.days(EXPIRY_DAYS),
        server_access_logs_bucket=logs,
        server_access_logs_prefix="payload-bucket/",
    )

    _, bucket = the_bucket(Template.from_stack(stack))

    assert bucket["Properties"]["LoggingConfiguration"] == {
        "DestinationBucketName": "claims-access-logs",
        "LogFilePrefix": "payload-bucket/",
    }


@pytest.mark.parametrize(
    "expire_after", [cdk.Duration.hours(36), cdk.Duration.days(0), cdk.Duration.hours(12)]
)
def test_expiry_is_whole_days(expire_after: cdk.Duration) -> None:
    with pytest.raises(ValueError, match="whole number of days"):
        build(expire_after=expire_after)


def nag_findings(outdir: Path) -> set[tuple[str, str]]:
    """cdk-nag's AwsSolutions findings for the bare stack, as (rule, construct path): the synth fails,
    and the report it leaves says why."""
    app, _, _ = build(outdir, nag=True)
    with pytest.raises(RuntimeError, match="ValidationFailed"):  # a finding fails the synth ...
        app.synth()
    (report,) = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    return {
        (violation["ruleName"], construct["constructPath"])
        for violation in report["violations"]
        for construct in violation["violatingConstructs"]
    }


def test_cdk_nag_asks_only_for_access_logs_and_the_prefix_wildcard(tmp_path: Path) -> None:
    findings = nag_findings(tmp_path)

    wildcard = {(rule, path) for rule, path in findings if rule.startswith("AwsSolutions-IAM5")}
    assert findings - wildcard == {("AwsSolutions-S1", "Claims/Payloads/Bucket/Resource")}
    assert {path for _, path in wildcard} == {
        "Claims/Writer/DefaultPolicy/Resource",
        "Claims/Reader/DefaultPolicy/Resource",
    }
    for rule, _ in wildcard:  # the payload prefix, and nothing wider
        assert rule.startswith("AwsSolutions-IAM5[Resource::<PayloadsBucket")
        assert rule.endswith(f".Arn>/{S3_PAYLOAD_PREFIX}*]")


def test_with_access_logs_cdk_nag_has_nothing_to_say(tmp_path: Path) -> None:
    """With a log bucket and no grants, the same checks (the test above shows them finding S1 without it)
    find nothing: the synth passes and the report lists no plugin with a finding."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Claims", env=ENV)
    PayloadBucket(
        stack,
        "Payloads",
        expire_after=cdk.Duration.days(EXPIRY_DAYS),
        server_access_logs_bucket=s3.Bucket.from_bucket_name(stack, "Logs", "claims-access-logs"),
        server_access_logs_prefix="payload-bucket/",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))

    app.synth()

    assert json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"] == []

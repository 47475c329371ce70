"""The S3 bucket of the claim check (`outbox.data.claim_check`): payloads too large for a DynamoDB item,
written by ingest before its transaction and read by whoever receives the relay's pointer.

Private, TLS-only, SSE-S3 and owner-enforced, so nobody needs a KMS grant and no ACL can open an object.
Versioning stays off: an object is written once under a key new to each ingest attempt and never
rewritten, so there is no older version to keep, and a lifecycle expiration on an unversioned bucket
really deletes. The lifecycle rule is the only thing that deletes payloads: consumers are told to leave them
(the relay delivers at least once, and a redrive sends a message again), so `expire_after` must outlast
every copy of a message that can still be delivered.

Server access logs (cdk-nag AwsSolutions-S1) are the stack's decision, not this construct's: pass
`server_access_logs_bucket` to have them, or acknowledge AwsSolutions-S1 on this bucket with the reason
(for instance: the objects are reachable only by the roles granted here, and CloudTrail S3 data events, if
an audit trail is needed, record who read and wrote them). Every other AwsSolutions S3 rule passes as built.
The grants name `<bucket ARN>/payloads/*`, since keys are made per message, and cdk-nag reports that
wildcard on each grantee's policy as AwsSolutions-IAM5 (`Resource::<...Arn>/payloads/*`): the stack
acknowledges it there, with the reason that the wildcard is the payload prefix and nothing wider.
"""

from __future__ import annotations

from typing import Final

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from outbox.core.schema import PAYLOAD_LIFECYCLE_RULE_ID, S3_PAYLOAD_PREFIX

WRITE_ACTIONS: Final = ("s3:PutObject",)
"""`put_payload`: one PutObject, no ACL, no tagging, no object lock, no KMS (SSE-S3)."""
READ_ACTIONS: Final = ("s3:GetObject",)
"""`read_payload` and the extended client libraries' receive. Without `s3:ListBucket`, S3 answers a
missing key with 403 rather than 404 (`read_payload` then raises instead of returning None). A Java
extended client deleting payloads on `deleteMessage` (its default) would also need `s3:DeleteObject`; it
should be configured not to (`cleanupS3Payload=false`), as `outbox.data.claim_check` explains."""
LIFECYCLE_RULE_ID: Final = PAYLOAD_LIFECYCLE_RULE_ID


class PayloadBucket(Construct):
    """The payload bucket, its expiry, and prefix-scoped grants."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        expire_after: cdk.Duration,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        server_access_logs_bucket: s3.IBucket | None = None,
        server_access_logs_prefix: str | None = None,
    ) -> None:
        """`expire_after`: whole days (S3 lifecycle rules count in days), at least the payload horizon:
        the longest a message that names an object can still be sent, received or redriven.
        `removal_policy`: RETAIN by default, like the tables; CloudFormation cannot delete a bucket that
        still holds objects, so DESTROY suits a bucket emptied first. `server_access_logs_bucket` (and
        its prefix): where S3 writes this bucket's access logs, or None for none (see the module)."""
        days = expire_after.to_days(integral=False)
        if days < 1 or days != int(days):
            given = expire_after.to_human_string()
            raise ValueError(f"expire_after must be a whole number of days, at least 1 (got {given})")
        super().__init__(scope, id)
        self.prefix = S3_PAYLOAD_PREFIX
        """The key prefix every payload is written under, and that the grants and expiry are scoped to."""
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(id=LIFECYCLE_RULE_ID, prefix=self.prefix, expiration=expire_after)
            ],
            removal_policy=removal_policy,
            server_access_logs_bucket=server_access_logs_bucket,
            server_access_logs_prefix=server_access_logs_prefix,
        )

    @property
    def bucket_name(self) -> str:
        return self.bucket.bucket_name

    @property
    def objects_arn(self) -> str:
        """The ARN of every payload object (`payloads/*`), not of the whole bucket."""
        return self.bucket.arn_for_objects(f"{self.prefix}*")

    def grant_write(self, grantee: iam.IGrantable) -> iam.Grant:
        """What ingest needs to store payloads: PutObject under the prefix."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=list(WRITE_ACTIONS), resource_arns=[self.objects_arn]
        )

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """What a reader of pointers needs (a consumer, the operator commands): GetObject under the
        prefix."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=list(READ_ACTIONS), resource_arns=[self.objects_arn]
        )

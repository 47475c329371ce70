"""cdk-nag AwsSolutions: no unacknowledged finding, and every acknowledgment known and explained."""

from __future__ import annotations

from tests.infra.stack_support import Synthesized

PAYLOAD_PREFIX_WILDCARD = "AwsSolutions-IAM5[Resource::<OutboxPayloadBucket3F1DAA14.Arn>/payloads/*]"
"""`payloads/*` on the payload bucket: each key is made per message (ADR 0023); no other wildcard."""
ACKNOWLEDGED = {
    ("AwsSolutions-L1", "Outbox/Outbox/Relay/Function/Resource"),
    ("AwsSolutions-L1", "Outbox/Ingest/Ingest/Function/Resource"),
    ("AwsSolutions-S1", "Outbox/Outbox/PayloadBucket/Bucket/Resource"),
    (PAYLOAD_PREFIX_WILDCARD, "Outbox/Outbox/Relay/Role/DefaultPolicy/Resource"),
    (PAYLOAD_PREFIX_WILDCARD, "Outbox/Ingest/Ingest/Role/DefaultPolicy/Resource"),
    (PAYLOAD_PREFIX_WILDCARD, "Outbox/OperatorPolicy/Resource"),
    # Active tracing's two X-Ray actions, which take no resource but * (ADR 0021).
    (
        "AwsSolutions-IAM5[Resource::*]",
        "Outbox/Outbox/Relay/Function/inlinePolicyAddedToExecutionRole-0/Resource",
    ),
    (
        "AwsSolutions-IAM5[Resource::*]",
        "Outbox/Ingest/Ingest/Function/inlinePolicyAddedToExecutionRole-0/Resource",
    ),
}
"""A new acknowledgment needs this list changed too, so it is seen in review."""


def test_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    (report,) = synthesized.validation_report()["pluginReports"]
    assert report["pluginName"] == "AwsSolutions"
    assert report["violations"] == []
    assert report["conclusion"] == "success"


def test_every_acknowledgment_is_known_and_has_a_reason(synthesized: Synthesized) -> None:
    (report,) = synthesized.validation_report()["pluginReports"]
    found = set()
    for violation in report["suppressedViolations"]:
        assert len(violation["reason"]) > 40, violation
        found |= {(violation["ruleName"], c["constructPath"]) for c in violation["violatingConstructs"]}
    assert found == ACKNOWLEDGED


def test_variant_passes_too(variant: Synthesized) -> None:
    (report,) = variant.validation_report()["pluginReports"]
    assert report["violations"] == []

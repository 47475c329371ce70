"""Synthesis helpers shared by the infra tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.app import SKIP_BUNDLING, build_app, project_context
from outbox.cdk.config import StackConfig

VARIANT_TOPIC_ARN = "arn:aws:sns:eu-west-1:210987654321:platform-alarms"
VARIANT_CONTEXT: dict[str, Any] = {
    "fifo": "true",  # text, as `cdk synth -c fifo=true` passes it
    "shards": 4,
    "relay_schedule": 2,
    "max_attempts": 3,
    "removal_policy": "destroy",
    "alarm_topic_arn": VARIANT_TOPIC_ARN,
    "region": "eu-west-1",
    "stack_name": "OutboxVariant",
    "api_rate_limit": "1000",
    "api_burst_limit": 2000,
    "example_consumer": "true",
}


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    config: StackConfig
    template: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}

    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.outdir / "validation-report.json").read_text())
        return report


def synth(outdir: Path, **context: Any) -> Synthesized:
    app, stack = build_app(project_context(**SKIP_BUNDLING, **context), outdir=str(outdir), environ={})
    app.synth()
    template = json.loads((outdir / f"{stack.config.stack_name}.template.json").read_text())
    return Synthesized(outdir, stack.config, template)

"""The CDK app: `cdk synth` runs `python -m infra.app` (cdk.json). cdk-nag's AwsSolutions checks run on
every synth, so a new finding fails it rather than waiting for a review."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra import PROJECT_ROOT
from infra.stack import OutboxStack
from outbox.cdk.config import ConfigError, StackConfig

CDK_JSON: Final = PROJECT_ROOT / "cdk.json"
SKIP_BUNDLING: Final[dict[str, list[str]]] = {"aws:cdk:bundling-stacks": []}
"""Context that makes CDK skip bundling (the asset hash stays real): for tests that only read templates."""


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    environ: Mapping[str, str] | None = None,
    code: lambda_.Code | None = None,
) -> tuple[cdk.App, OutboxStack]:
    """The app and its one stack. The CLI passes cdk.json's context through the environment; in-process
    callers pass `project_context()` plus their own keys."""
    app = cdk.App(context=dict(context or {}), outdir=outdir)
    config = StackConfig.from_context(app.node.try_get_context, os.environ if environ is None else environ)
    stack = OutboxStack(app, config=config, code=code)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def project_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context (feature flags and defaults) with `overrides`, as `cdk synth -c` would give."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    return {**context, **overrides}


def synthesize(outdir: Path, **context: Any) -> tuple[Path, StackConfig]:
    """Synthesize with bundling into `outdir` for the placeholder account; returns it and the config."""
    app, stack = build_app(project_context(**context), outdir=str(outdir), environ={})
    app.synth()
    return outdir, stack.config


def main() -> None:
    try:
        app, _ = build_app()
    except ConfigError as exc:  # one line naming the context key, not a traceback
        raise SystemExit(f"infra.app: {exc}") from None
    app.synth()


if __name__ == "__main__":
    main()

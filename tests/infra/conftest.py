"""Synthesized templates, shared per session: one synth without bundling for the template checks, one
variant with every context switch flipped, and one real bundling run for the asset and the rehearsal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.app import synthesize
from tests.infra.stack_support import VARIANT_CONTEXT, Synthesized, synth

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "infra: CDK stack checks (synth, cdk-nag, cfn-lint, deploy rehearsal)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.infra)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The default stack (cdk.json's context), bundling skipped."""
    return synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Every context switch away from its default."""
    return synth(tmp_path_factory.mktemp("variant"), **VARIANT_CONTEXT)


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The one real bundling run (pip for arm64 into the asset), shared by the asset tests and the
    rehearsal."""
    outdir, config = synthesize(
        tmp_path_factory.mktemp("bundled"), stack_name="OutboxRehearsal", example_consumer=True
    )
    return Synthesized(
        outdir, config, json.loads((outdir / f"{config.stack_name}.template.json").read_text())
    )

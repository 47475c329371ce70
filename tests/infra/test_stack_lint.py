"""cfn-lint on the synthesized templates. The one ignored check is documented in ADR 0010."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from tests.infra.stack_support import Synthesized

IGNORED = ["W3005"]
"""W3005: a DependsOn that a Ref already implies. CDK emits it for the function→role-policy ordering."""


@pytest.mark.parametrize("fixture", ["synthesized", "variant"])
def test_cfn_lint_clean(fixture: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(fixture)
    matches = lint(
        json.dumps(synth.template),
        config=ManualArgs(regions=[synth.config.region], ignore_checks=IGNORED),
    )
    assert [str(match) for match in matches] == []

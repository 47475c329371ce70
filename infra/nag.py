"""cdk-nag (AwsSolutions) findings this stack accepts, each with its reason (cdk-nag 3: CDK validations).

An acknowledgment names one rule on one construct; anything new fails `cdk synth` and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

LATEST_RUNTIME_REASON: Final = (
    "Python 3.13 is the newest runtime the package supports (requires-python <3.14, tested on it); "
    "moving to 3.14 is a deliberate upgrade with its own test run, not a synth-time default."
)


def acknowledge_findings(functions: Iterable[lambda_.IFunction]) -> None:
    """The functions' accepted findings (a list, not the stack: this module is the stack's to use)."""
    for function in functions:
        cdk.Validations.of(function).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-L1", reason=LATEST_RUNTIME_REASON)
        )

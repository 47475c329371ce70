"""This repository's CDK app (docs/design.md §7): one stack composed of the shipped constructs
(`outbox.cdk`), with cdk-nag on every synth and a rehearsal on an emulator. Not installed: teams compose
their own app from `outbox.cdk` (README, "Install").

`python -m infra.app` synthesizes (run by `cdk synth` through cdk.json); `python -m infra.rehearse` deploys
the synthesized stack to an embedded moto server and drives the handlers against it.

Importing this package points the jsii runtime (which runs the CDK in Node) at the Node 22 that
`npm ci` installs from package.json, when it is there and nothing else was chosen: the machine's Node 20
is past its end of life (jsii warns on every run) and slower. `npx cdk` already puts it first on PATH.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository: this package is the repository's own CDK app, never installed."""
_PROJECT_NODE = PROJECT_ROOT / "node_modules" / ".bin" / "node"
if "JSII_NODE" not in os.environ and _PROJECT_NODE.exists():
    os.environ["JSII_NODE"] = str(_PROJECT_NODE)

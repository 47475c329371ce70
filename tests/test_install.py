"""As a team installs it: the wheel, in a fresh virtualenv outside the repository, running a CDK app of
the team's own (docs/example-app) whose Lambda asset is built from the installed packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from infra import PROJECT_ROOT

pytestmark = pytest.mark.infra


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a new virtualenv; its dependencies come from this test run's environment
    (a path entry, not an install: no network needed for them, and not this checkout's own packages)."""
    root = tmp_path_factory.mktemp("installed")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        root / "dist",
        PROJECT_ROOT,
        cwd=root,
    )
    (wheel,) = (root / "dist").glob("dynamodb_sqs_outbox-*.whl")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=root)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=root)
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root).strip()
    )
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_the_installed_packages_come_from_the_wheel_not_the_checkout(
    fresh_venv: Path, tmp_path: Path
) -> None:
    report = _run(
        fresh_venv / "bin" / "python",
        "-c",
        "import json, outbox, relay.handler, outbox.cdk, outbox.ingest.handler; "
        "print(json.dumps({'outbox': outbox.__file__, 'relay': relay.handler.__file__, "
        "'version': outbox.__version__, 'typed': (__import__('pathlib').Path(outbox.__file__).parent "
        "/ 'py.typed').exists()}))",
        cwd=tmp_path,
    )
    found = json.loads(report)
    for name in ("outbox", "relay"):
        assert found[name].startswith(str(fresh_venv)), found
    assert found["typed"]
    assert found["version"] == _pyproject_version()


def test_a_teams_own_cdk_app_synthesizes_with_the_construct_and_its_own_outbox_writer(
    fresh_venv: Path, tmp_path: Path
) -> None:
    app = tmp_path / "orders-service"
    shutil.copytree(PROJECT_ROOT / "docs" / "example-app", app)
    outdir = tmp_path / "cdk.out"
    node = PROJECT_ROOT / "node_modules" / ".bin" / "node"
    env = {"CDK_OUTDIR": str(outdir), **({"JSII_NODE": str(node)} if node.exists() else {})}

    _run(fresh_venv / "bin" / "python", "app.py", cwd=app, env=env)

    template = json.loads((outdir / "Orders.template.json").read_text())
    functions = {
        resource["Properties"]["Handler"]: resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert set(functions) == {"orders.handler", "relay.handler.handler"}
    environment = functions["orders.handler"]["Properties"]["Environment"]["Variables"]
    assert {"MESSAGES_TABLE", "OUTBOX_TABLE", "QUEUE_URL", "ORDERS_TABLE"} <= set(environment)
    granted = {
        action
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        and "PlaceOrder" in json.dumps(resource["Properties"]["Roles"])
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert "dynamodb:PutItem" in granted

    key = functions["orders.handler"]["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset = outdir / f"asset.{key}"
    installed = (
        fresh_venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    assert (asset / "orders.py").read_text() == (app / "orders_src" / "orders.py").read_text()
    assert (asset / "outbox" / "api.py").read_bytes() == (installed / "outbox" / "api.py").read_bytes()
    assert (asset / "aws_lambda_powertools").is_dir()
    assert not (asset / "outbox" / "cdk").exists()
    assert not (asset / "outbox" / "cli.py").exists()


def _pyproject_version() -> str:
    import tomllib  # noqa: PLC0415

    return str(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"])

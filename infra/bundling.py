"""The one Lambda asset both functions share, built without Docker (DESIGN §7, §9).

`pip install --platform` fetches wheels for the Lambda's platform into the asset folder, pinned to the
versions in `requirements/lock.txt`, and the `outbox` and `relay` packages are copied next to them without
their local-only parts. boto3 is left out: the Lambda runtime provides it. Docker bundling stays as the
fallback CDK uses when local bundling declines (pip missing or failing).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
LOCK_FILE: Final = PROJECT_ROOT / "requirements" / "lock.txt"
PACKAGES: Final = ("outbox", "relay")
"""The runtime packages copied into the asset."""
EXCLUDED: Final = frozenset({"outbox/local", "outbox/testing", "outbox/cli.py"})
"""Local-only code (emulator, demo, CLI, test helpers): handlers never import it, so it stays out."""
PROVIDED_BY_RUNTIME: Final = frozenset({"boto3", "botocore"})

RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE: Final = lambda_.Architecture.ARM_64
PIP_PLATFORM: Final = "manylinux2014_aarch64"
PIP_PYTHON_VERSION: Final = "3.13"


class BundlingError(RuntimeError):
    """The runtime requirements cannot be pinned from the lock file."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(
    pyproject: Path = PROJECT_ROOT / "pyproject.toml", lock: Path = LOCK_FILE
) -> list[str]:
    """The distribution's own dependencies minus what the runtime provides, pinned as in the lock file."""
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    names = [_normalize(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in declared]
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, separator, version = line.strip().partition("==")
        if separator:
            pins[_normalize(name)] = version.strip()
    missing = [name for name in names if name not in PROVIDED_BY_RUNTIME and name not in pins]
    if missing:
        raise BundlingError(f"{', '.join(missing)} not pinned in {lock.name}")
    return [f"{name}=={pins[name]}" for name in names if name not in PROVIDED_BY_RUNTIME]


def source_files(root: Path = PROJECT_ROOT) -> Iterator[tuple[str, Path]]:
    """Every file copied into the asset, as (path inside the asset, path on disk), in a stable order."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if any(relative == excluded or relative.startswith(excluded + "/") for excluded in EXCLUDED):
                continue
            yield relative, path


def asset_hash(requirements: list[str], root: Path = PROJECT_ROOT) -> str:
    """A hash of exactly what goes into the asset, so CDK neither fingerprints the whole project folder
    (.venv, node_modules) nor rebuilds an unchanged asset."""
    digest = hashlib.sha256()
    for part in (PIP_PLATFORM, PIP_PYTHON_VERSION, *requirements):
        digest.update(part.encode() + b"\0")
    for relative, path in source_files(root):
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(cdk.ILocalBundling)
class PipBundler:
    """Builds the asset on this machine: pip for the Lambda platform, then a copy of the packages."""

    def __init__(self, requirements: list[str], root: Path = PROJECT_ROOT) -> None:
        self._requirements = requirements
        self._root = root

    def try_bundle(self, output_dir: str, *_: Any, **__: Any) -> bool:
        """Returns False (CDK then tries Docker) only when pip cannot run or fails, after saying why."""
        command = [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-compile", "--target", output_dir, "--only-binary=:all:"),
            *("--platform", PIP_PLATFORM, "--implementation", "cp", "--python-version", PIP_PYTHON_VERSION),
            *("--constraint", str(self._root / "requirements" / "lock.txt")),
            *self._requirements,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            print(f"local bundling: pip failed, trying Docker\n{result.stderr}", file=sys.stderr)
            return False
        shutil.rmtree(Path(output_dir) / "bin", ignore_errors=True)  # console scripts: of no use in Lambda
        for relative, path in source_files(self._root):
            target = Path(output_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        return True


def lambda_code(root: Path = PROJECT_ROOT) -> lambda_.Code:
    """The shared asset. Unit tests skip bundling (`aws:cdk:bundling-stacks: []`); the hash stays real."""
    requirements = runtime_requirements(root / "pyproject.toml", root / "requirements" / "lock.txt")
    excluded = " ".join(f"/asset-output/{path}" for path in sorted(EXCLUDED))
    docker_command = (
        f"pip install --no-compile -t /asset-output -c requirements/lock.txt {' '.join(requirements)}"
        f" && cp -r {' '.join(PACKAGES)} /asset-output && rm -rf {excluded} /asset-output/bin"
        " && find /asset-output -name __pycache__ -prune -exec rm -rf {} +"
    )
    return lambda_.Code.from_asset(
        str(root),
        asset_hash=asset_hash(requirements, root),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", docker_command],
            platform="linux/arm64",
            local=PipBundler(requirements, root),
        ),
    )

"""The one Lambda asset both functions share, built without Docker from the *installed* packages.

`pip install --platform` fetches wheels for the Lambda's platform into the asset folder, pinned to the
versions installed where the CDK app runs (a clone's `.venv` holds the lock file's; a team's service holds
what it tested with), and the `outbox` and `relay` packages are copied next to them, from wherever they are
installed, without their local-only parts. So the construct works from `pip install
'dynamodb-sqs-outbox[cdk]'` in any project, not only next to a clone. boto3 is left out: the Lambda runtime
provides it. Docker bundling stays as the fallback CDK uses when local bundling declines.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata, util
from pathlib import Path
from typing import Any, Final

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement

DISTRIBUTION: Final = "dynamodb-sqs-outbox"
PACKAGES: Final = ("outbox", "relay")
"""The runtime packages copied into the asset, from wherever they are installed."""
EXCLUDED: Final = frozenset({"outbox/local", "outbox/testing", "outbox/cli.py", "outbox/cdk", "outbox/ops"})
"""Code the handlers never import (emulator, demo, CLI, test helpers, the CDK construct): left out."""
PROVIDED_BY_RUNTIME: Final = frozenset({"boto3", "botocore"})
CLI_ONLY: Final = frozenset({"typer", "rich"})
"""Base dependencies only the `outbox` command imports (outbox/cli.py, left out above): every install gets
a working command, and the asset stays without them and all they pull in (pydantic, pygments, ...)."""
LAMBDA_MARKERS: Final = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "extra": "",
}
"""The environment markers of the Lambda runtime below, for deciding which dependencies it needs."""

RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE: Final = lambda_.Architecture.ARM_64
PIP_PLATFORM: Final = "manylinux2014_aarch64"
PIP_PYTHON_VERSION: Final = "3.13"


class BundlingError(RuntimeError):
    """The runtime's requirements cannot be read from the installed distribution."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """What the Lambda needs besides our own packages: the installed distribution's dependencies for the
    Lambda's Python and platform (no extras), with everything they need in turn, each pinned to the
    version installed here, minus what the Lambda runtime provides. The asset is built from the
    installation, so a team's own service gets the versions it tested with (in this repository: the lock
    file's, which `./dev` installs)."""
    pins: dict[str, str] = {}
    todo = [distribution]
    while todo:
        current = todo.pop()
        try:
            declared = metadata.requires(current) or []
        except metadata.PackageNotFoundError as exc:
            raise BundlingError(f"{exc.name} is not installed: install {DISTRIBUTION} first") from exc
        for spec in declared:
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate(LAMBDA_MARKERS):
                continue
            name = _normalize(requirement.name)
            if name in pins or name in PROVIDED_BY_RUNTIME:
                continue
            if current == distribution and name in CLI_ONLY:
                continue  # the command's, not the handlers': not followed, so nothing it needs comes in
            try:
                pins[name] = metadata.version(name)
            except metadata.PackageNotFoundError as exc:
                raise BundlingError(f"{name}, which the Lambda needs, is not installed here") from exc
            todo.append(name)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def package_roots() -> dict[str, Path]:
    """Where each runtime package is installed (a clone's folders under an editable install)."""
    roots: dict[str, Path] = {}
    for package in PACKAGES:
        spec = util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BundlingError(f"the {package!r} package is not installed: install {DISTRIBUTION}")
        roots[package] = Path(next(iter(spec.submodule_search_locations)))
    return roots


def source_files(extra: Path | None = None) -> Iterator[tuple[str, Path]]:
    """Every file copied into the asset, as (path inside the asset, path on disk), in a stable order:
    the runtime packages, then a team's own `extra` folder's files at the asset's root."""
    for package, root in package_roots().items():
        for path in sorted(root.rglob("*")):
            relative = f"{package}/{path.relative_to(root).as_posix()}"
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if any(relative == excluded or relative.startswith(excluded + "/") for excluded in EXCLUDED):
                continue
            yield relative, path
    if extra is not None:
        for path in sorted(extra.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(extra).as_posix()
                if relative.split("/", 1)[0] in PACKAGES:
                    raise BundlingError(f"{extra}: {relative} would replace the outbox's own package")
                yield relative, path


def asset_hash(requirements: list[str], extra: Path | None = None) -> str:
    """A hash of exactly what goes into the asset, so CDK neither fingerprints a whole folder nor
    rebuilds an unchanged asset."""
    digest = hashlib.sha256()
    for part in (PIP_PLATFORM, PIP_PYTHON_VERSION, *requirements):
        digest.update(part.encode() + b"\0")
    for relative, path in source_files(extra):
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_sources(folder: Path, extra: Path | None = None) -> Path:
    """Copy the runtime packages' files (and `extra`'s) into `folder`, the asset's input: the same files
    wherever the packages are installed, a clone or a team's own virtualenv."""
    for relative, path in source_files(extra):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return folder


@jsii.implements(cdk.ILocalBundling)
class PipBundler:
    """Builds the asset on this machine: pip for the Lambda platform, then a copy of the packages."""

    def __init__(self, requirements: list[str], sources: Path | None = None) -> None:
        self._requirements = requirements
        self._sources = sources

    def try_bundle(self, output_dir: str, *_: Any, **__: Any) -> bool:
        """Returns False (CDK then tries Docker) only when pip cannot run or fails, after saying why."""
        command = [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            # The pins are the whole closure already (`runtime_requirements`): pip must not add what the
            # runtime provides (botocore, which aws-xray-sdk requires) or anything unpinned.
            *("--no-compile", "--no-deps", "--target", output_dir, "--only-binary=:all:"),
            *("--platform", PIP_PLATFORM, "--implementation", "cp", "--python-version", PIP_PYTHON_VERSION),
            *self._requirements,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            print(f"local bundling: pip failed, trying Docker\n{result.stderr}", file=sys.stderr)
            return False
        shutil.rmtree(Path(output_dir) / "bin", ignore_errors=True)  # console scripts: of no use in Lambda
        if self._sources is not None:
            shutil.copytree(self._sources, output_dir, dirs_exist_ok=True)
        else:
            stage_sources(Path(output_dir))
        return True


def lambda_code(extra_sources: Path | str | None = None) -> lambda_.Code:
    """A Lambda asset built from the installed packages and their runtime dependencies. With
    `extra_sources`, a team's own folder goes in too, at the asset's root, so its handlers can `import
    outbox` (`lambda_code("orders_src")`, handler `"orders.handler"`). Unit tests skip bundling
    (`aws:cdk:bundling-stacks: []`); the hash stays real."""
    extra = Path(extra_sources).resolve() if extra_sources is not None else None
    if extra is not None and not extra.is_dir():
        raise BundlingError(f"extra_sources: {extra} is not a folder")
    requirements = runtime_requirements()
    fingerprint = asset_hash(requirements, extra)
    sources = Path(tempfile.gettempdir()) / f"outbox-asset-sources-{fingerprint[:20]}"
    if not sources.is_dir():  # keyed by content: staged once, reused by every synth of the same code
        staging = stage_sources(Path(tempfile.mkdtemp(prefix="outbox-asset-staging-")), extra)
        try:
            staging.rename(sources)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(staging, ignore_errors=True)
    docker_command = (
        f"pip install --no-compile --no-deps -t /asset-output {' '.join(requirements)}"
        " && cp -r /asset-input/. /asset-output && rm -rf /asset-output/bin"
        " && find /asset-output -name __pycache__ -prune -exec rm -rf {} +"
    )
    return lambda_.Code.from_asset(
        str(sources),
        asset_hash=fingerprint,
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", docker_command],
            platform="linux/arm64",
            local=PipBundler(requirements, sources),
        ),
    )

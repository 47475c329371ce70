"""Cold-start figures: a handler module's import time in a fresh interpreter, and the Lambda asset's
zipped size, built the way `outbox/cdk/bundling.py` builds it (its own functions, pip for the Lambda
platform)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
HANDLER_MODULES: Final = ("outbox.ingest.handler", "relay.handler")
_TIMER: Final = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str, *, runs: int = 7) -> float:
    """The least, over `runs` fresh interpreters, of the time `import module` takes (bytecode cache warm,
    as on a machine that ran it before; interpreter start-up excluded). The minimum, as `timeit` advises:
    other load on a shared machine only ever adds to an import's time."""
    timings: list[float] = []
    for _ in range(runs):
        result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
            [sys.executable, "-c", _TIMER.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            cwd=PROJECT_ROOT,
        )
        timings.append(float(result.stdout.strip().splitlines()[-1]))
    return min(timings)


@dataclass(frozen=True, slots=True)
class Asset:
    zipped_bytes: int | None
    unzipped_bytes: int | None
    files: int | None
    has_boto3: bool | None
    note: str


def lambda_asset() -> Asset:
    """Build the shared Lambda asset in a temporary folder and zip it (deflate, as CDK does). Needs pip to
    reach the package index; on failure the reason is returned instead of a size."""
    try:
        from outbox.cdk.bundling import PipBundler, runtime_requirements  # noqa: PLC0415 - imports the CDK
    except ImportError as exc:  # pragma: no cover - infra extra not installed
        return Asset(None, None, None, None, f"skipped: outbox.cdk.bundling unavailable ({exc})")
    with tempfile.TemporaryDirectory(prefix="bench-asset-") as folder:
        output = Path(folder) / "asset"
        output.mkdir()
        requirements = runtime_requirements()
        if not PipBundler(requirements).try_bundle(str(output)):
            return Asset(None, None, None, None, "skipped: pip could not fetch the runtime wheels (offline?)")
        archive = Path(folder) / "asset.zip"
        unzipped = 0
        files = 0
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(output.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(output).as_posix())
                    unzipped += path.stat().st_size
                    files += 1
        has_boto3 = (output / "boto3").exists() or (output / "botocore").exists()
        return Asset(
            archive.stat().st_size,
            unzipped,
            files,
            has_boto3,
            f"built with outbox.cdk.bundling.PipBundler: {', '.join(requirements)} + outbox, relay",
        )

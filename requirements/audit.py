"""Audit the locked dependency set (`requirements/lock.txt`) for known vulnerabilities with pip-audit.

Run by `./dev audit` (and by CI). Exit 0: every locked package was checked and none has a known
vulnerability. Exit 1: a vulnerability was found, or some packages could be checked and others not.
Exit 3: no advisory source answered for any package (offline, or a registry mirror without the per-version
JSON that carries PyPI's advisories); CI reports that as skipped rather than passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent / "lock.txt"
UNREACHABLE = 3


def main(pip_audit: str) -> int:
    result = subprocess.run(  # noqa: S603 - the pip-audit the caller installed, fixed arguments
        [pip_audit, "-r", str(LOCK), "--no-deps", "--disable-pip", "--progress-spinner=off", "--format=json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit gave no report (no advisory source reachable?):\n{result.stderr[-800:]}")
        return UNREACHABLE
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    for dependency in vulnerable:
        ids = ", ".join(v["id"] for v in dependency["vulns"])
        print(f"audit: {dependency['name']} {dependency['version']}: {ids}")
    if vulnerable:
        return 1
    if dependencies and len(skipped) == len(dependencies):
        print(f"audit: SKIPPED, no advisory source answered for any of {len(dependencies)} packages")
        print(f"audit: first reason: {skipped[0]['skip_reason']}")
        return UNREACHABLE
    if skipped:
        print(f"audit: {len(skipped)} of {len(dependencies)} packages could not be checked:")
        for dependency in skipped:
            print(f"audit:   {dependency['name']}: {dependency['skip_reason']}")
        return 1
    print(f"audit: {len(dependencies)} locked packages, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

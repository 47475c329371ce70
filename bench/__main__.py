"""`python -m bench [--messages N] [--payload-kb KB ...]`: the relay benchmark (issue 7, ADR 0012)."""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Before the handlers are imported: their loggers read the level once. Per-message INFO lines would
    # bury the table (and cost time that is not the library's). Only as a command: importing this module
    # (the tests do) must not change the environment of the process, and of the commands it starts.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report import document, markdown
from bench.run import DEFAULT_PAYLOAD_KBS, ITEM_OVERHEAD_BYTES, progress, run_benchmark
from bench.startup import HANDLER_MODULES, import_seconds, lambda_asset
from outbox.core.settings import S3_MAX_PAYLOAD_BYTES
from relay.core import RelayConfig

RESULTS = Path(__file__).resolve().parent / "results"


def draw_charts(folder: Path) -> None:
    """The SVG charts beside the tables (bench/charts.py). The tables are written first: a chart that
    cannot be drawn, or matplotlib missing, is a line on stderr and never loses them or the exit code."""
    try:
        from bench import charts  # noqa: PLC0415 - matplotlib loads after the tables are safe

        outcomes = charts.draw(folder, folder)
    except Exception as exc:
        print(f"bench: charts not drawn ({type(exc).__name__}: {exc}); the tables are saved", file=sys.stderr)
        return
    for outcome in outcomes:
        print(f"bench: {outcome.note}", file=sys.stderr)


def _payload_kb(text: str) -> int:
    """A scenario's size: a whole number of KB whose payload the outbox accepts (S3 takes it up to
    `S3_MAX_PAYLOAD_BYTES`)."""
    largest = (S3_MAX_PAYLOAD_BYTES + ITEM_OVERHEAD_BYTES) // 1024
    try:
        kb = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of KB") from None
    if not 1 <= kb <= largest:
        raise argparse.ArgumentTypeError(f"{kb} KB: between 1 and {largest} (S3's payload limit)")
    return kb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=1000, help="messages per relay and scenario")
    parser.add_argument(
        "--payload-kb",
        type=_payload_kb,
        action="append",
        help="message item size in KB, 1 to 4883 (repeatable; default: 1, 100 and 1024; from 343 on the "
        "payload goes through S3)",
    )
    parser.add_argument("--ingest-sample", type=int, default=200, help="handler calls timed for p50/p99")
    parser.add_argument("--no-asset", action="store_true", help="skip building the Lambda asset (needs pip)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for latest.md and latest.json")
    args = parser.parse_args(argv)
    payload_kbs = tuple(args.payload_kb or DEFAULT_PAYLOAD_KBS)
    command = "python -m bench" + " ".join(["", *(argv if argv is not None else sys.argv[1:])]).rstrip()
    config = RelayConfig()
    scenarios = run_benchmark(
        messages=args.messages, payload_kbs=payload_kbs, ingest_sample=args.ingest_sample, config=config
    )
    progress("cold imports of the handler modules")
    imports = {module: import_seconds(module) for module in HANDLER_MODULES}
    if not args.no_asset:
        progress("building the Lambda asset (pip)")
    asset = None if args.no_asset else lambda_asset()
    table = markdown(scenarios, imports=imports, asset=asset, command=command, config=config)
    print(table)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.md").write_text(table, encoding="utf-8")
    data = document(scenarios, imports=imports, asset=asset, command=command, config=config)
    (args.output / "latest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    draw_charts(args.output)
    delivered = all(s.ours.delivery.ok and s.naive.delivery.ok for s in scenarios)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())

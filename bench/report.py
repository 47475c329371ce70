"""The benchmark's markdown table and JSON document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Final

from bench import model
from bench.run import RelayResult, Scenario
from bench.startup import Asset
from outbox.core import usage
from relay.core import RelayConfig

MOTO_CAVEAT: Final = (
    "moto is not a performance model (its TransactWriteItems and SQS costs are not AWS's, and the meter's "
    "own size look-ups run in the timed loop): wall-clock figures measure moto."
)


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _row(name: str, cells: Sequence[str]) -> str:
    return "| " + " | ".join([name, *cells]) + " |"


_S3_OPERATIONS: Final = frozenset({"PutObject", "HeadObject", "GetObject"})


def _size(scenario: Scenario) -> str:
    """A scenario's column: its message size, and where the payload goes when that is S3."""
    return f"{scenario.payload_kb} KB" + (" (S3)" if scenario.through_s3 else "")


def markdown(
    scenarios: Sequence[Scenario],
    *,
    imports: dict[str, float] | None,
    asset: Asset | None,
    command: str,
    config: RelayConfig,
) -> str:
    lines: list[str] = [
        "# Relay benchmark",
        "",
        f"Command: `{command}` — relay config: batch {config.batch_size}, page "
        f"{config.page_size}, {config.parallel_shards} parallel shards; "
        f"{scenarios[0].messages if scenarios else 0:,} messages per relay and scenario.",
        "",
    ]
    header: list[str] = []
    for scenario in scenarios:
        header += [
            f"ours {_size(scenario)}",
            f"naive {_size(scenario)}",
            f"floor {_size(scenario)}",
        ]
    lines += [_row("per relayed message", header), _row("---", ["---:"] * len(header))]

    def relay_row(name: str, pick: Callable[[RelayResult], str], floor: Callable[[Scenario], str]) -> None:
        cells: list[str] = []
        for scenario in scenarios:
            cells += [pick(scenario.ours), pick(scenario.naive), floor(scenario)]
        lines.append(_row(name, cells))

    relay_row(
        "relay AWS calls", lambda r: _fmt(r.cost.calls_per_message, 3), lambda s: _fmt(s.floor.relay_calls, 3)
    )
    relay_row(
        "relay DynamoDB write units",
        lambda r: _fmt(r.cost.write_units_per_message),
        lambda s: _fmt(s.floor.relay_write_units),
    )
    relay_row(
        "relay DynamoDB read units",
        lambda r: _fmt(r.cost.read_units_per_message),
        lambda s: _fmt(s.floor.relay_read_units),
    )
    relay_row(
        "relay SQS requests (64 KB chunks)",
        lambda r: _fmt(r.cost.sqs_requests_per_message, 3),
        lambda s: _fmt(s.floor.relay_sqs_requests, 3),
    )
    relay_row(
        "relay S3 requests (HEAD)",
        lambda r: _fmt(r.cost.s3_requests_per_message, 3),
        lambda s: _fmt(s.floor.relay_s3_read_requests, 3),
    )
    cells: list[str] = []
    for scenario in scenarios:
        ingest = scenario.ingest.write_units_per_message
        cells += [
            _fmt(ingest + scenario.ours.cost.write_units_per_message),
            _fmt(scenario.naive_ingest.write_units_per_message + scenario.naive.cost.write_units_per_message),
            _fmt(scenario.floor.ingest_write_units + scenario.floor.relay_write_units),
        ]
    lines.append(_row("DynamoDB write units, ingest + relay", cells))
    relay_row(
        "relay $ per million messages",
        lambda r: _fmt(r.cost.dollars_per_million),
        lambda s: _fmt(s.floor_dollars_per_million["relay"]),
    )
    cells = []
    for scenario in scenarios:
        ingest = scenario.ingest.dollars_per_million
        cells += [
            _fmt(ingest + scenario.ours.cost.dollars_per_million),
            _fmt(scenario.naive_ingest.dollars_per_million + scenario.naive.cost.dollars_per_million),
            _fmt(sum(scenario.floor_dollars_per_million.values())),
        ]
    lines.append(_row("$ per million, ingest + relay", cells))
    relay_row("modeled AWS msgs/s, one worker", lambda r: _fmt(r.modeled_per_worker, 0), lambda s: "—")
    relay_row(
        "modeled AWS msgs/s, real parallelism",
        lambda r: f"{_fmt(r.modeled_with_parallelism, 0)} (x{r.workers})",
        lambda s: "—",
    )
    cells = []
    for scenario in scenarios:
        ratio = scenario.ours.modeled_per_worker / scenario.naive.modeled_per_worker
        cells += [f"{ratio:.1f}x naive", "1x", "—"]
    lines.append(_row("modeled speed-up per worker", cells))
    relay_row("moto wall-clock msgs/s (not AWS)", lambda r: _fmt(r.moto_per_second, 0), lambda s: "—")
    relay_row(
        "delivered / loaded",
        lambda r: f"{r.delivery.unique_received:,}/{r.delivery.loaded:,}" + (" ✓" if r.delivery.ok else " ✗"),
        lambda s: "—",
    )

    lines += _ingest_lines(scenarios)

    lines += [
        "",
        "Calls and units by operation (per message: calls, write units, read units, SQS requests):",
        "",
    ]
    lines += [_row("scenario", ["operation", "calls", "WRU", "RRU", "SQS req", "S3 req"])]
    lines += [_row("---", ["---", "---:", "---:", "---:", "---:", "---:"])]
    for scenario in scenarios:
        for label, cost in (
            ("ingest", scenario.ingest),
            ("ours", scenario.ours.cost),
            ("naive", scenario.naive.cost),
        ):
            for operation, calls in cost.calls_by_operation.items():
                s3_requests = 0.0 if operation not in _S3_OPERATIONS else calls / cost.messages
                lines.append(
                    _row(
                        f"{label} {_size(scenario)}",
                        [
                            operation,
                            _fmt(calls / cost.messages, 3),
                            _fmt(cost.write_units_by_operation.get(operation, 0.0) / cost.messages),
                            _fmt(cost.read_units_by_operation.get(operation, 0.0) / cost.messages),
                            _fmt(cost.sqs_requests_by_operation.get(operation, 0) / cost.messages, 3),
                            _fmt(s3_requests, 3),
                        ],
                    )
                )

    if imports or asset:
        lines += ["", "Cold start:", "", _row("figure", ["value"]), _row("---", ["---:"])]
        for module, seconds in (imports or {}).items():
            lines.append(
                _row(f"`import {module}` (fresh interpreter, least of 7)", [f"{seconds * 1000:.0f} ms"])
            )
        if asset is not None:
            if asset.zipped_bytes is None:
                lines.append(_row("Lambda asset, zipped", [asset.note]))
            else:
                lines.append(
                    _row(
                        "Lambda asset, zipped (no boto3)",
                        [
                            f"{asset.zipped_bytes / 1e6:.2f} MB "
                            f"({(asset.unzipped_bytes or 0) / 1e6:.2f} MB unzipped, "
                            f"{asset.files} files, boto3 inside: {asset.has_boto3})"
                        ],
                    )
                )
    lines += [
        "",
        f"Prices: ${usage.PRICE_PER_WRITE_UNIT * 1e6:.3f} per million write units, "
        f"${usage.PRICE_PER_READ_UNIT * 1e6:.3f} per million read units, "
        f"${usage.PRICE_PER_SQS_REQUEST * 1e6:.2f} per million SQS requests, "
        f"${usage.PRICE_PER_S3_WRITE_REQUEST * 1e6:.2f} per million S3 PUTs and "
        f"${usage.PRICE_PER_S3_READ_REQUEST * 1e6:.2f} per million S3 GETs/HEADs (on-demand list; "
        "request charges only, storage is priced in ADR 0023). "
        "Modeled rates: Σ calls x typical latency (bench/model.py; figures and sources in ADR 0012) — an "
        "assumption, not a measurement.",
        f"Caveat: {MOTO_CAVEAT}",
        "",
    ]
    return "\n".join(lines)


def _ingest_lines(scenarios: Sequence[Scenario]) -> list[str]:
    """The ingest table: what accepting a message costs, ours and the naive relay's load."""
    lines: list[str] = [
        "",
        "Ingest (library `enqueue`; handler latency from `outbox.ingest.handler.handler` on moto):",
        "",
    ]
    lines += [_row("per accepted message", [_size(s) for s in scenarios])]
    lines += [_row("---", ["---:"] * len(scenarios))]
    lines.append(_row("AWS calls", [_fmt(s.ingest.calls_per_message) for s in scenarios]))
    lines.append(
        _row(
            "S3 requests (PUT) (floor)",
            [
                f"{_fmt(s.ingest.s3_requests_per_message, 3)} ({_fmt(s.floor.ingest_s3_write_requests, 3)})"
                for s in scenarios
            ],
        )
    )
    lines.append(
        _row(
            "DynamoDB write units (floor)",
            [
                f"{_fmt(s.ingest.write_units_per_message)} ({_fmt(s.floor.ingest_write_units)})"
                for s in scenarios
            ],
        )
    )
    lines.append(_row("$ per million messages", [_fmt(s.ingest.dollars_per_million) for s in scenarios]))
    lines.append(
        _row(
            "naive's load (payload inline; S3 past an item's limit): write units, $ per million",
            [
                f"{_fmt(s.naive_ingest.write_units_per_message)}, {_fmt(s.naive_ingest.dollars_per_million)}"
                for s in scenarios
            ],
        )
    )
    lines.append(
        _row(
            "handler p50 / p99 ms on moto",
            [
                f"{_fmt(s.ingest_latency_ms['p50'], 1)} / {_fmt(s.ingest_latency_ms['p99'], 1)} "
                f"(n={int(s.ingest_latency_ms['samples'])})"
                for s in scenarios
            ],
        )
    )
    lines.append(
        _row(
            "message item / after finalize / entry / payload item bytes",
            [
                f"{s.message_item_bytes:,} / {s.queued_message_item_bytes:,} / {s.entry_item_bytes} / "
                f"{s.payload_item_bytes:,}"
                for s in scenarios
            ],
        )
    )
    return lines


def document(
    scenarios: Sequence[Scenario],
    *,
    imports: dict[str, float] | None,
    asset: Asset | None,
    command: str,
    config: RelayConfig,
) -> dict[str, Any]:
    return {
        "command": command,
        "relay_config": asdict(config),
        "prices": {
            "write_unit": usage.PRICE_PER_WRITE_UNIT,
            "read_unit": usage.PRICE_PER_READ_UNIT,
            "sqs_request": usage.PRICE_PER_SQS_REQUEST,
            "s3_write_request": usage.PRICE_PER_S3_WRITE_REQUEST,
            "s3_read_request": usage.PRICE_PER_S3_READ_REQUEST,
        },
        "latency_model_ms": {name: asdict(latency) for name, latency in model.LATENCY.items()},
        "transfer_bytes_per_ms": model.TRANSFER_BYTES_PER_MS,
        "scenarios": [scenario.as_dict() for scenario in scenarios],
        "import_seconds": imports,
        "lambda_asset": asdict(asset) if asset else None,
        "caveat": MOTO_CAVEAT,
    }

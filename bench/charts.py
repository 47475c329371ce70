"""`python -m bench.charts [--results DIR] [--output DIR]`: SVG charts of the benchmarks' JSON (issue #17).

Reads what the benchmarks wrote and draws, next to their tables:

* cost-per-message.svg, from latest.json (`python -m bench`): $ per million messages, ingest + relay, by
  component (DynamoDB writes and reads, SQS requests), ours vs naive vs floor, one panel per payload size;
* latency.svg, from latency.json (`python -m bench.latency`): the local stack's 202 → QUEUED delivery
  latency and the POST round trip. The JSON holds nearest-rank percentiles (p50, p90, p99, max), not the
  per-message samples, so those four points are drawn, not a histogram;
* consumer-cost.svg, from consumer.json (`python -m bench.consumer`): DynamoDB write units per message by
  operation, the outbox consumer vs Powertools idempotency.

A chart whose JSON is missing is skipped with a one-line note. matplotlib draws without a display (its SVG
backend, no pyplot), and the files are reproducible: no date, fixed ids (`svg.hashsalt`), and a caption
that names the source file relative to the repository, never an absolute path.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.patches import Patch

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

RESULTS: Final = Path(__file__).resolve().parent / "results"
PROJECT_ROOT: Final = RESULTS.parent.parent

RC: Final[dict[RcKeyType, Any]] = {
    "svg.hashsalt": "dynamodb-sqs-outbox bench charts",  # ids from a fixed salt, not a random one
    "svg.fonttype": "path",  # glyphs as paths: the chart looks the same whatever fonts a viewer has
    "font.family": "DejaVu Sans",  # the font matplotlib ships, so the layout does not follow the machine's
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",  # not transparent: readable on a dark page too
    "savefig.facecolor": "white",
}
CAPTION_WIDTH: Final = 150
"""Characters per caption line at the default figure widths."""

# Okabe-Ito: told apart with the common colour-vision deficiencies.
COLORS: Final = {
    ("ingest", "write"): "#0072B2",
    ("relay", "write"): "#56B4E9",
    ("ingest", "read"): "#D55E00",
    ("relay", "read"): "#E69F00",
    ("ingest", "sqs"): "#CC79A7",
    ("relay", "sqs"): "#009E73",
    ("ingest", "s3"): "#F0E442",
    ("relay", "s3"): "#999999",
}
KIND_LABELS: Final = {
    "write": "DynamoDB writes",
    "read": "DynamoDB reads",
    "sqs": "SQS requests",
    "s3": "S3 requests",
}
OPERATION_COLORS: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


class ChartError(Exception):
    """The JSON is there but is not what the benchmark writes; the message is one line for the user."""


@dataclass(frozen=True)
class Chart:
    filename: str
    source: str
    command: str
    draw: Callable[[dict[str, Any], str], Figure]


@dataclass(frozen=True)
class Outcome:
    chart: str
    written: Path | None
    note: str
    ok: bool


def _source_label(path: Path) -> str:
    """Where the JSON is, for a caption: relative to the repository when inside it, else its name only,
    so a chart does not change with the folder it was drawn in."""
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return path.name


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChartError(f"{what} is {value!r}, not a number")
    return float(value)


def _get(data: Any, *keys: str) -> Any:
    current = data
    for depth, key in enumerate(keys):
        if not isinstance(current, dict) or key not in current:
            raise ChartError(f"no {'.'.join(keys[: depth + 1])}")
        current = current[key]
    return current


def _caption(fig: Figure, *paragraphs: str) -> None:
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph, CAPTION_WIDTH, break_on_hyphens=False, break_long_words=False)
    # A "$" would open matplotlib's mathtext: the prices in a caption are dollars, written as such.
    text = "\n".join(lines).replace("$", r"\$")
    fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=7.5, color="#333333")


# -- cost per message -----------------------------------------------------------------------------------


def _cost_bars(scenario: dict[str, Any], prices: dict[str, float]) -> dict[str, dict[tuple[str, str], float]]:
    """$ per million messages by (stage, kind) for ours, naive and floor."""

    def of(cost: dict[str, Any], stage: str, where: str) -> dict[tuple[str, str], float]:
        return {
            (stage, "write"): _number(cost.get("write_units_per_message"), f"{where}.write_units_per_message")
            * prices["write"],
            (stage, "read"): _number(cost.get("read_units_per_message"), f"{where}.read_units_per_message")
            * prices["read"],
            (stage, "sqs"): _number(cost.get("sqs_requests_per_message"), f"{where}.sqs_requests_per_message")
            * prices["sqs"],
            # Results written before the S3 scenario carry no S3 requests: none were made.
            (stage, "s3"): (
                _number(cost.get("s3_write_requests", 0), f"{where}.s3_write_requests") * prices["s3_write"]
                + _number(cost.get("s3_read_requests", 0), f"{where}.s3_read_requests") * prices["s3_read"]
            )
            / max(1.0, _number(cost.get("messages", 1), f"{where}.messages")),
        }

    ingest = of(_get(scenario, "ingest"), "ingest", "ingest")
    # Results written before ADR 0023 billed one load for both relays.
    naive_ingest = (
        of(scenario["naive_ingest"], "ingest", "naive_ingest") if "naive_ingest" in scenario else ingest
    )
    floor = _get(scenario, "floor")
    return {
        "ours": {**ingest, **of(_get(scenario, "ours", "cost"), "relay", "ours.cost")},
        "naive": {**naive_ingest, **of(_get(scenario, "naive", "cost"), "relay", "naive.cost")},
        "floor": {
            ("ingest", "write"): _number(floor.get("ingest_write_units"), "floor") * prices["write"],
            ("ingest", "read"): 0.0,
            ("ingest", "sqs"): 0.0,
            ("ingest", "s3"): _number(floor.get("ingest_s3_write_requests", 0), "floor") * prices["s3_write"],
            ("relay", "write"): _number(floor.get("relay_write_units"), "floor") * prices["write"],
            ("relay", "read"): _number(floor.get("relay_read_units"), "floor") * prices["read"],
            ("relay", "sqs"): _number(floor.get("relay_sqs_requests"), "floor") * prices["sqs"],
            ("relay", "s3"): _number(floor.get("relay_s3_read_requests", 0), "floor") * prices["s3_read"],
        },
    }


def _table_totals(scenario: dict[str, Any]) -> dict[str, float]:
    """Ingest + relay $ per million as the tables print them, where the JSON has them."""
    totals: dict[str, float] = {}
    for name, load in (("ours", "ingest"), ("naive", "naive_ingest")):
        ingest = scenario.get(load, {}).get("dollars_per_million")
        relay = scenario.get(name, {}).get("cost", {}).get("dollars_per_million")
        if isinstance(ingest, int | float) and isinstance(relay, int | float):
            totals[name] = float(ingest) + float(relay)
    floor = scenario.get("floor", {}).get("dollars_per_million")
    if isinstance(floor, dict) and all(isinstance(v, int | float) for v in floor.values()):
        totals["floor"] = float(sum(floor.values()))
    return totals


def _relay_calls(scenario: dict[str, Any]) -> dict[str, float]:
    return {
        "ours": _number(_get(scenario, "ours", "cost", "calls_per_message"), "ours calls"),
        "naive": _number(_get(scenario, "naive", "cost", "calls_per_message"), "naive calls"),
        "floor": _number(_get(scenario, "floor", "relay_calls"), "floor calls"),
    }


def cost_per_message(data: dict[str, Any], source: str) -> Figure:
    scenarios = _get(data, "scenarios")
    if not isinstance(scenarios, list) or not scenarios:
        raise ChartError("no scenarios")
    raw_prices = _get(data, "prices")
    prices = {
        "write": _number(_get(raw_prices, "write_unit"), "prices.write_unit") * 1e6,
        "read": _number(_get(raw_prices, "read_unit"), "prices.read_unit") * 1e6,
        "sqs": _number(_get(raw_prices, "sqs_request"), "prices.sqs_request") * 1e6,
        "s3_write": _number(raw_prices.get("s3_write_request", 0), "prices.s3_write_request") * 1e6,
        "s3_read": _number(raw_prices.get("s3_read_request", 0), "prices.s3_read_request") * 1e6,
    }
    bars = [_cost_bars(scenario, prices) for scenario in scenarios]
    shown = [c for c in COLORS if any(b[name][c] > 0 for b in bars for name in b)]

    fig = Figure(figsize=(4.2 * len(scenarios) + 1.0, 4.6), layout="constrained")
    axes = fig.subplots(1, len(scenarios), squeeze=False)[0]
    for ax, scenario, by_name in zip(axes, scenarios, bars, strict=True):
        names = list(by_name)
        bottoms = [0.0] * len(names)
        for component in shown:
            heights = [by_name[name][component] for name in names]
            ax.bar(names, heights, bottom=bottoms, color=COLORS[component], width=0.6)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        totals = _table_totals(scenario)
        for x, (name, top) in enumerate(zip(names, bottoms, strict=True)):
            # The table's figure: summed in another order, the stack may round a cent apart.
            label = f"${totals.get(name, top):,.2f}"
            ax.annotate(label, (x, top), xytext=(0, 3), textcoords="offset points", ha="center")
        calls = _relay_calls(scenario)
        ax.set_xticks(range(len(names)), [f"{name}\n{calls[name]:.3f} calls" for name in names])
        ax.set_ylim(0, max(bottoms) * 1.12)
        ax.set_ylabel("$ per million messages (ingest + relay)")
        payload_kb = _get(scenario, "payload_kb")
        item_bytes = _number(_get(scenario, "message_item_bytes"), "message_item_bytes")
        where = ", payload in S3" if scenario.get("through_s3") else ""
        ax.set_title(f"{payload_kb} KB message ({item_bytes:,.0f}-byte item{where})")
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    fig.legend(
        handles=[Patch(color=COLORS[c], label=f"{KIND_LABELS[c[1]]}, {c[0]}") for c in reversed(shown)],
        loc="outside right center",
        frameon=False,
    )
    messages = _get(scenarios[0], "messages")
    fig.suptitle("Cost per message by component: ours vs naive vs floor (DynamoDB, SQS and S3 on-demand)")
    _caption(
        fig,
        f"Source: {source}, written by `{_get(data, 'command')}` ({messages:,} messages per relay and "
        f"scenario). Units counted from the requests and the items as stored (bench/units.py), priced at "
        f"${prices['write']:.3f} per million write units, ${prices['read']:.3f} per million read units, "
        f"${prices['sqs']:.2f} per million SQS requests, ${prices['s3_write']:.2f} / "
        f"${prices['s3_read']:.2f} per million S3 PUTs / HEADs. Naive's load keeps every payload in "
        "its message item (in S3 past an item's limit, as ours); ours stores a large one apart (ADR "
        "0023); floor: what DynamoDB, SQS and S3 make unavoidable in our layout (bench/model.py). "
        "Calls: the relay's AWS calls per message.",
    )
    return fig


# -- latency --------------------------------------------------------------------------------------------

PERCENTILES: Final = (("p50", "o"), ("p90", "s"), ("p99", "^"), ("max", "X"))


def _ladder(ax: Axes, summary: dict[str, Any], color: str, title: str) -> None:
    points = [(name, marker, summary.get(name)) for name, marker in PERCENTILES]
    values = [(name, marker, _number(v, name)) for name, marker, v in points if v is not None]
    n = summary.get("n", 0)
    ax.set_title(f"{title} (n={n})", loc="left")
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_ylim(-1, 1)
    if not values:
        ax.text(0.5, 0.0, "no message measured", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
        return
    top = max(v for _, _, v in values)
    ax.set_xlim(0, top * 1.12)
    ax.hlines(0, values[0][2], top, color=color, linewidth=2.5, alpha=0.35)
    for index, (name, marker, value) in enumerate(values):
        ax.plot([value], [0], marker=marker, color=color, markersize=8, linestyle="none")
        above = index % 2 == 0
        ax.annotate(
            f"{name}\n{value:.3f} s" if above else f"{value:.3f} s\n{name}",
            (value, 0),
            xytext=(0, 9 if above else -9),
            textcoords="offset points",
            ha="center",
            va="bottom" if above else "top",
        )
    ax.set_xlabel("seconds")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def latency(data: dict[str, Any], source: str) -> Figure:
    delivery = _get(data, "delivery_seconds")
    post = _get(data, "post_round_trip_seconds")
    options = _get(data, "options")
    fig = Figure(figsize=(8.6, 4.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[1, 1])
    _ladder(top, delivery, "#0072B2", "202 → QUEUED: ingest's write to the relay's QUEUED mark, server clock")
    _ladder(bottom, post, "#E69F00", "POST round trip, client side")
    queue = "FIFO" if options.get("fifo") else "standard"
    fig.suptitle(
        f"Local stack delivery latency: {_number(options.get('rate'), 'rate'):g} msg/s for "
        f"{_number(options.get('seconds'), 'seconds'):g} s, relay every "
        f"{_number(options.get('relay_every'), 'relay_every'):g} s, {queue} queue"
    )
    goal, caveat = str(data.get("goal") or ""), str(data.get("caveat") or "")
    notes = [f"{goal[:1].upper()}{goal[1:]}" if goal else "", caveat]  # "goal (issue #14): ...", "moto ..."
    runs = data.get("relay_runs_by_trigger") or {}
    triggers = ", ".join(f"{name} {count}" for name, count in sorted(runs.items()))
    _caption(
        fig,
        f"Source: {source}, written by `{_get(data, 'command')}`. The JSON holds nearest-rank percentiles "
        "(p50, p90, p99, max), not per-message samples: the points are those four figures, not a "
        "histogram." + (f" Relay runs by trigger: {triggers}." if triggers else ""),
        " ".join(f"{text.rstrip('.')}." for text in notes if text),
    )
    return fig


# -- consumer -------------------------------------------------------------------------------------------

CONSUMER_GROUPS: Final = (
    ("first_delivery", "first delivery\n(per message)"),
    ("duplicate_delivery", "duplicate delivery\n(per duplicate)"),
    ("all_deliveries", "all deliveries\n(per message)"),
)
CONSUMER_SIDES: Final = (("ours", "ours"), ("baseline", "Powertools"))


def _per_message(cost: dict[str, Any], where: str) -> tuple[dict[str, float], float]:
    messages = _number(cost.get("messages"), f"{where}.messages")
    by_operation = cost.get("write_units_by_operation")
    if not isinstance(by_operation, dict) or messages <= 0:
        raise ChartError(f"no write units by operation in {where}")
    units = {op: _number(v, f"{where}.{op}") / messages for op, v in sorted(by_operation.items())}
    return units, _number(cost.get("dollars_per_million"), f"{where}.dollars_per_million")


def consumer_cost(data: dict[str, Any], source: str) -> Figure:
    figures = {
        (side, group): _per_message(_get(data, side, group), f"{side}.{group}")
        for side, _ in CONSUMER_SIDES
        for group, _ in CONSUMER_GROUPS
    }
    operations = sorted({op for units, _ in figures.values() for op in units})
    colors = dict(zip(operations, OPERATION_COLORS, strict=False))
    highest = max(sum(units.values()) for units, _ in figures.values())

    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    axes = fig.subplots(1, len(CONSUMER_GROUPS), sharey=True)
    for ax, (group, group_label) in zip(axes, CONSUMER_GROUPS, strict=True):
        for x, (side, _) in enumerate(CONSUMER_SIDES):
            units, dollars = figures[side, group]
            bottom = 0.0
            for op in operations:
                height = units.get(op, 0.0)
                if height:
                    ax.bar([x], [height], bottom=bottom, color=colors[op], width=0.6)
                bottom += height
            ax.annotate(
                f"{bottom:.2f} WRU\n${dollars:.3f}/M",
                (x, bottom),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
            )
        ax.set_xticks(range(len(CONSUMER_SIDES)), [label for _, label in CONSUMER_SIDES])
        ax.set_xlim(-0.6, len(CONSUMER_SIDES) - 0.4)
        ax.set_title(group_label)
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("DynamoDB write units per message")
    axes[0].set_ylim(0, highest * 1.2)
    fig.legend(
        handles=[Patch(color=colors[op], label=op) for op in reversed(operations)],
        loc="outside right center",
        frameon=False,
        title="operation",
    )
    options = _get(data, "options")
    deliveries = _get(data, "deliveries")
    fig.suptitle(
        "Consumer: DynamoDB write units per message, ours (OutboxConsumer) vs Powertools idempotency"
    )
    _caption(
        fig,
        f"Source: {source}, written by `{_get(data, 'command')}`: {deliveries.get('messages')} messages of "
        f"{_number(options.get('payload_kb'), 'payload_kb'):g} KB, {deliveries.get('duplicates')} "
        f"delivered twice, {deliveries.get('total')} deliveries. Write units counted from the requests and "
        "the items as stored (bench/units.py); $ per million at the on-demand list price. What each "
        "operation does: the tables in consumer.md. SQS and Lambda are the same for both and left out.",
    )
    return fig


# -- files ----------------------------------------------------------------------------------------------

CHARTS: Final = (
    Chart("cost-per-message.svg", "latest.json", "python -m bench", cost_per_message),
    Chart("latency.svg", "latency.json", "python -m bench.latency", latency),
    Chart("consumer-cost.svg", "consumer.json", "python -m bench.consumer", consumer_cost),
)


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def save(fig: Figure, path: Path, title: str) -> None:
    """An SVG with no date in it, so drawing the same JSON twice gives the same bytes."""
    FigureCanvasSVG(fig)
    fig.savefig(
        path,
        format="svg",
        bbox_inches="tight",
        pad_inches=0.15,
        metadata={"Date": None, "Title": title},
    )


def _one(chart: Chart, results: Path, output: Path) -> Outcome:
    source = results / chart.source
    if not source.is_file():
        note = f"skipped {chart.filename}: no {source} (run `{chart.command}` first)"
        return Outcome(chart.filename, None, note, ok=True)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        return Outcome(chart.filename, None, f"cannot read {source}: {exc.strerror or exc}", ok=False)
    except ValueError as exc:
        return Outcome(
            chart.filename, None, f"cannot draw {chart.filename}: {source} is not JSON: {exc}", ok=False
        )
    target = output / chart.filename
    with _style():
        try:
            if not isinstance(data, dict):
                raise ChartError("not a JSON object")
            fig = chart.draw(data, _source_label(source))
        except (ChartError, ValueError, TypeError, KeyError) as exc:
            note = f"cannot draw {chart.filename} from {source}: {exc}"
            return Outcome(chart.filename, None, note, ok=False)
        try:
            output.mkdir(parents=True, exist_ok=True)
            save(fig, target, fig.get_suptitle())
        except OSError as exc:
            return Outcome(chart.filename, None, f"cannot write {target}: {exc.strerror or exc}", ok=False)
    return Outcome(chart.filename, target, f"wrote {target}", ok=True)


def draw(results: Path = RESULTS, output: Path = RESULTS) -> list[Outcome]:
    """Every chart whose JSON is in `results`, written to `output`: one outcome per chart, a missing JSON
    skipped, a bad one reported, never a traceback."""
    return [_one(chart, results, output) for chart in CHARTS]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="folder with the benchmarks' JSON (default: bench/results)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="folder for the SVG files (default: the --results folder)"
    )
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"--results: no folder {args.results}")
    outcomes = draw(args.results, args.output or args.results)
    for outcome in outcomes:
        print(outcome.note, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

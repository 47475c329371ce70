"""`python -m chaos --messages N --relays R --kills K --fault-rate F [--fifo]`: run one scenario, print the
figures, write them to `chaos/results/latest.json` (or `--output`); exit 0 only when every invariant held.
Beside the sweeping relays, `--doorbell-relays` relays are rung by the Outbox table's stream, whose records
are dropped, duplicated, delayed and reordered on the way (`--stream-*`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaos.checker import Figures
from chaos.runner import Scenario, run_scenario

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--relays", type=int, default=3, help="in-process relays (faults, simulated kills)")
    parser.add_argument("--kills", type=int, default=6, help="simulated crashes of in-process relays")
    parser.add_argument("--process-relays", type=int, default=1, help="`outbox relay --once` subprocesses")
    parser.add_argument("--sigkills", type=int, default=2, help="real SIGKILLs of subprocess relays")
    parser.add_argument(
        "--doorbell-relays",
        type=int,
        default=2,
        help="in-process relays rung by the Outbox table's stream, one mapping lane each (0: sweeps only)",
    )
    parser.add_argument(
        "--stream-drop", type=float, default=0.1, help="probability that a stream record never rings"
    )
    parser.add_argument(
        "--stream-duplicate",
        type=float,
        default=0.1,
        help="probability that a stream record rings twice (the copy later)",
    )
    parser.add_argument(
        "--stream-delay",
        type=float,
        default=0.2,
        help="probability that a polled batch of records is held back up to --stream-max-delay",
    )
    parser.add_argument(
        "--stream-reorder",
        type=float,
        default=0.2,
        help="probability that a stream record is delivered behind records written after it",
    )
    parser.add_argument(
        "--stream-max-delay", type=float, default=3.0, help="seconds a delayed record may be held back"
    )
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fifo", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ingest-pause", type=float, default=0.0, help="seconds between one client's requests"
    )
    parser.add_argument(
        "--sample-interval", type=float, default=0.25, help="seconds between two status scans"
    )
    parser.add_argument("--groups-per-client", type=int, default=3, help="FIFO groups per ingest client")
    parser.add_argument("--relay-seconds", type=float, default=6.0, help="time budget of one relay run")
    parser.add_argument("--drain-budget", type=float, default=120.0, help="seconds the clean drain may take")
    parser.add_argument(
        "--consumers",
        type=int,
        default=0,
        help="consumer lanes reading the queue through the consumer helper, with crashes, timeouts, failures "
        "and lost deletes (chaos/consumers.py); 0: the checker reads the queue itself",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    scenario = Scenario(
        messages=args.messages,
        relays=args.relays,
        kills=args.kills,
        process_relays=args.process_relays,
        sigkills=args.sigkills,
        doorbell_relays=args.doorbell_relays,
        stream_drop=args.stream_drop,
        stream_duplicate=args.stream_duplicate,
        stream_delay=args.stream_delay,
        stream_reorder=args.stream_reorder,
        stream_max_delay_seconds=args.stream_max_delay,
        fault_rate=args.fault_rate,
        fifo=args.fifo,
        clients=args.clients,
        seed=args.seed,
        ingest_pause_seconds=args.ingest_pause,
        sample_interval_seconds=args.sample_interval,
        progress_seconds=10.0,
        groups_per_client=args.groups_per_client,
        relay_run_seconds=args.relay_seconds,
        drain_budget_seconds=args.drain_budget,
        consumers=args.consumers,
    )
    figures = run_scenario(scenario)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures.as_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    print_figures(Console(), figures)
    return 0 if figures.ok else 1


def print_figures(console: Console, figures: Figures) -> None:
    scenario = figures.scenario
    table = Table(title=f"chaos: {'FIFO' if scenario.get('fifo') else 'standard'} queue", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    faults = ", ".join(f"{count} {kind}" for kind, count in figures.faults.items()) or "none"
    rows = [
        ("messages accepted", f"{figures.accepted:,}"),
        (
            "faults injected",
            f"{figures.faults_total:,} ({figures.fault_share_of_calls:.1%} of faulted calls)",
        ),
        ("  by kind", faults),
        *(
            [("  entry faults spared (SQS would deduplicate)", f"{figures.entry_faults_spared}")]
            if scenario.get("fifo")
            else []
        ),
        (
            "relay kills: simulated (in-process)",
            f"{figures.simulated_kills} ({figures.doorbell_kills} of doorbell runs)"
            if scenario.get("doorbell_relays")
            else f"{figures.simulated_kills}",
        ),
        ("relay kills: SIGKILL (subprocess)", f"{figures.sigkills}"),
        ("concurrent relays (max seen)", f"{figures.max_concurrent_relays}"),
        *(_doorbell_rows(figures) if scenario.get("doorbell_relays") else []),
        (
            "sent by sweeps / processes / the drain",
            f"{figures.sweep_sent:,} / {figures.process_relay_sent:,} / {figures.drain_sent:,}",
        ),
        (
            "duplicates possible (relays' count)",
            f"{figures.relay_summary.get('duplicates_possible', 0):,}",
        ),
        ("ingest retries / replays", f"{figures.ingest_retries:,} / {figures.ingest_replays:,}"),
        ("COMPLETED" if figures.consumers else "QUEUED", f"{figures.queued:,}"),
        ("received from SQS", f"{figures.received:,}"),
        ("lost", f"{figures.lost}"),
        ("wrong payload", f"{figures.wrong_payload}"),
        ("payloads stored apart (delivered whole)", f"{figures.payloads_apart:,}"),
        ("duplicates (extra copies)", f"{figures.duplicates} ({figures.duplicates_unexplained} unexplained)"),
        (
            "  of requeued messages / sent > 5 min apart",
            f"{figures.duplicates_requeued} / {figures.duplicates_outside_dedup_window}",
        ),
        *(
            [("FIFO resends > 4 min after the first claim", f"{figures.late_fifo_resends}")]
            if scenario.get("fifo")
            else []
        ),
        *(_consumer_rows(figures) if figures.consumers else []),
        ("status regressions", f"{figures.regressions} ({figures.status_scans:,} scans)"),
        ("stuck entries", f"{figures.stuck_entries}"),
        ("FIFO order violations", f"{figures.order_violations}"),
        ("requeued in the drain", f"{len(figures.requeued)}"),
        ("elapsed", f"{figures.seconds:.1f} s (moto; not a performance figure)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(
        "[bold green]OK[/]" if figures.ok else "[bold red]NOT OK[/]: an invariant failed (see JSON)"
    )


def _consumer_rows(figures: Figures) -> list[tuple[str, str]]:
    outcomes = figures.consumer_outcomes
    return [
        ("consumer lanes / receives", f"{figures.consumers} / {figures.consumer_receives:,}"),
        (
            "  crashed / timed out / failed / lost deletes",
            f"{outcomes.get('crashed', 0)} / {outcomes.get('timed_out', 0)} / {outcomes.get('failed', 0)} / "
            f"{outcomes.get('lost_delete', 0)}",
        ),
        (
            "  claims lost / not claimed / duplicates suppressed",
            " / ".join(str(outcomes.get(name, 0)) for name in ("claim_lost", "not_claimed", "duplicate")),
        ),
        ("COMPLETED", f"{figures.completed:,}"),
        (
            "side effects applied once / never / more than once",
            f"{figures.effects_applied_once:,} / {figures.effects_missing} / "
            f"{figures.effects_applied_more_than_once}",
        ),
        ("stuck PROCESSING / in the DLQ", f"{figures.stuck_processing} / {figures.dead_lettered}"),
        ("found in the DLQ by the drain (marked, redriven)", f"{len(figures.redriven)}"),
    ]


def _doorbell_rows(figures: Figures) -> list[tuple[str, str]]:
    stream = figures.stream
    return [
        ("doorbell runs / messages sent", f"{figures.doorbell_runs:,} / {figures.doorbell_sent:,}"),
        (
            "  overlapping another on a rung shard / a sweep",
            f"{figures.doorbell_runs_sharing_a_shard:,} / {figures.doorbell_runs_beside_a_sweep:,}",
        ),
        ("  most doorbell runs on one shard", f"{figures.max_doorbell_runs_on_a_shard}"),
        (
            "stream records seen / delivered (batches)",
            f"{stream.get('records_seen', 0):,} / {stream.get('delivered', 0):,} "
            f"({stream.get('batches', 0):,})",
        ),
        (
            "  dropped / duplicated / delayed / reordered",
            " / ".join(
                f"{stream.get(name, 0):,}" for name in ("dropped", "duplicated", "delayed", "reordered")
            ),
        ),
        ("  delivered out of stream order", f"{stream.get('delivered_out_of_order', 0):,}"),
        ("  undelivered when the chaos ended", f"{stream.get('undelivered_at_stop', 0):,}"),
    ]


if __name__ == "__main__":
    sys.exit(main())

"""A small chaos scenario per queue type (ADR 0013): concurrent ingest with retries, three relays at once
with 15 % faults (lost responses included), two of them separate processes killed with SIGKILL and one
in-process relay crashed by a kill switch, then a clean drain. Then the same with the doorbell (ADR 0017):
relays rung by the Outbox table's stream, its records dropped, duplicated, delayed and reordered, two
doorbell runs and the sweep on one shard at once. The full-size figures come from `python -m chaos`
(README, Guarantees)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos.checker import Accepted, Figures, order_violations_in
from chaos.doorbell import Perturbation, StreamFeed
from chaos.runner import Scenario, run_scenario

pytestmark = pytest.mark.server


def _assert_the_invariants(figures: Figures, *, fifo: bool) -> None:
    """What every scenario must end with (ADR 0013): nothing lost or stuck, no status moved back, every
    duplicate explained (and none on FIFO, in order)."""
    details = figures.as_dict()
    assert figures.lost == 0, details
    assert figures.wrong_payload == 0, details
    assert figures.stuck_entries == 0, details
    assert figures.regressions == 0, figures.regression_samples
    assert figures.vanished == 0, details
    assert not figures.ingest_bugs, details
    assert figures.queued == figures.accepted, details
    if fifo:
        assert figures.duplicates == 0, details
        assert figures.order_violations == 0, figures.order_violation_samples
    else:
        assert figures.duplicates_unexplained == 0, details
    assert figures.ok, details


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_small_chaos_scenario_loses_nothing(fifo: bool) -> None:
    scenario = Scenario(
        messages=120,
        relays=1,
        kills=2,
        process_relays=2,
        sigkills=3,
        fault_rate=0.15,
        fifo=fifo,
        clients=3,
        seed=11,
        max_chaos_seconds=40,
        doorbell_relays=0,  # the sweep alone: a mapping disabled, or a table made before the stream
    )

    figures = run_scenario(scenario)

    details = figures.as_dict()
    assert figures.accepted == 120, details
    assert figures.faults_total > 0, details
    assert figures.simulated_kills >= 1, details
    assert figures.sigkills >= 1, details
    assert figures.max_concurrent_relays >= 2, details
    assert figures.payloads_apart == 15, details  # every 8th of 120 is stored apart (ADR 0023)
    assert figures.faults_by_operation.get("PutItem", 0) > 0, details  # their writes faulted too
    _assert_the_invariants(figures, fifo=fifo)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_consumers_that_crash_time_out_fail_and_lose_deletes_apply_each_side_effect_once(fifo: bool) -> None:
    """Issue #16: consumer lanes through the helper beside faulted relays; the effects table must hold one
    application per accepted message, nothing PROCESSING, nothing in the DLQ, no regressions."""
    scenario = Scenario(
        messages=60,
        relays=1,
        kills=1,
        process_relays=0,
        sigkills=0,
        fault_rate=0.15,
        fifo=fifo,
        clients=2,
        seed=13,
        max_chaos_seconds=30,
        doorbell_relays=0,
        consumers=2,
        consumer_crash=0.1,
        consumer_timeout=0.05,
        consumer_fail=0.1,
        consumer_lost_delete=0.1,
    )

    figures = run_scenario(scenario)

    details = figures.as_dict()
    outcomes = figures.consumer_outcomes
    assert figures.accepted == 60, details
    for outcome in ("crashed", "failed", "lost_delete", "duplicate"):
        assert outcomes.get(outcome, 0) > 0, (outcome, details)
    assert figures.completed == 60, details
    assert (figures.effects_applied_once, figures.effects_missing) == (60, 0), details
    assert figures.effects_applied_more_than_once == 0, details
    assert (figures.stuck_processing, figures.dead_lettered) == (0, 0), details
    _assert_the_invariants(figures, fifo=fifo)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_doorbell_relays_on_a_perturbed_stream_lose_nothing(fifo: bool) -> None:
    scenario = Scenario(
        messages=150,
        relays=1,
        kills=2,
        process_relays=1,
        sigkills=1,
        doorbell_relays=2,
        stream_drop=0.2,
        stream_duplicate=0.2,
        stream_delay=0.25,
        stream_reorder=0.25,
        stream_max_delay_seconds=2.0,
        fault_rate=0.1,
        fifo=fifo,
        clients=3,
        # FIFO: a killed run's claims block their groups for the 30 s lease; with few groups hardly anything
        # moves before the drain, the doorbell's share included
        groups_per_client=12,
        seed=13,
        ingest_pause_seconds=0.02,
        max_chaos_seconds=30,
    )

    figures = run_scenario(scenario)

    details = figures.as_dict()
    stream = figures.stream
    # the doorbell path ran, under every perturbation, beside the sweep and beside itself
    assert figures.doorbell_runs > 0, details
    for perturbation in ("dropped", "duplicated", "delayed", "reordered", "delivered_out_of_order"):
        assert stream[perturbation] > 0, (perturbation, stream)
    # Each doorbell run either relayed its shards or found them leased by another relay (ADR 0018: the
    # sweeps here run back to back, so which of the two happens is timing): either way it ran the path.
    busy = int(figures.doorbell_summary.get("shards_busy", 0))
    assert figures.doorbell_sent + busy > 0, details
    if not fifo:
        assert figures.doorbell_runs_beside_a_sweep > 0, details
        assert figures.max_doorbell_runs_on_a_shard >= 2, details
    assert figures.faults_total > 0, details
    # the same invariants as without it
    assert figures.accepted == 150, details
    _assert_the_invariants(figures, fifo=fifo)


def test_the_checker_reports_a_group_received_out_of_order() -> None:
    accepted = [Accepted(f"m{n}", n, f"k{n}", "g0" if n % 2 == 0 else "g1", {}, 0.0) for n in range(6)]

    def received(*indexes: int) -> list[dict[str, object]]:
        return [
            {
                "MessageAttributes": {"message_id": {"StringValue": f"m{n}"}},
                "Attributes": {"MessageGroupId": f"g{n % 2}"},
            }
            for n in indexes
        ]

    # g1 interleaved with g0 and a duplicate of m0 late: both are in order
    assert order_violations_in(received(0, 1, 2, 0, 3, 4, 5), accepted) == []
    # g0 arrives as 0, 4, 2: #4 came before #2, which was accepted first
    assert order_violations_in(received(0, 1, 4, 3, 2, 5), accepted) == ["g0: #4 received before #2"]


class _Tail:
    """Stands in for `StreamTail`: one prepared poll, then nothing."""

    def __init__(self, *sequences: int) -> None:
        self._events = [{"Records": [_record(sequence) for sequence in sequences]}]

    def start(self) -> _Tail:
        return self

    def poll(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events


def _record(sequence: int) -> dict[str, Any]:
    keys = {"shard": {"S": str(sequence % 8)}, "entry_id": {"S": f"e{sequence}"}}
    return {"eventName": "INSERT", "dynamodb": {"Keys": keys, "SequenceNumber": str(sequence)}}


def _delivered(feed: StreamFeed, now: float) -> list[int]:
    feed.pump(now)
    event = feed.take(0, timeout=0)
    return [int(record["dynamodb"]["SequenceNumber"]) for record in (event or {"Records": []})["Records"]]


def test_the_stream_feed_drops_duplicates_and_delays_records_and_counts_it() -> None:
    def feed(**perturbation: float) -> StreamFeed:
        return StreamFeed(
            _Tail(1, 2, 3),
            lanes=1,
            perturbation=Perturbation(**perturbation),
            rng=random.Random(3),  # noqa: S311
        )

    plain = feed()
    assert _delivered(plain, 0.0) == [1, 2, 3]
    assert (plain.counts.records_seen, plain.counts.delivered, plain.counts.delivered_out_of_order) == (
        3,
        3,
        0,
    )

    dropped = feed(drop=1.0)
    assert _delivered(dropped, 0.0) == []
    assert dropped.counts.dropped == 3
    assert dropped.close().undelivered_at_stop == 0

    doubled = feed(duplicate=1.0, max_delay_seconds=1.0)
    assert _delivered(doubled, 0.0) == [1, 2, 3]  # the copies come later...
    assert sorted(_delivered(doubled, 1.0)) == [1, 2, 3]
    assert doubled.counts.duplicated == 3
    assert doubled.counts.delivered_out_of_order == 2  # ...behind #3: #1 and #2 are out of stream order

    delayed = feed(delay=1.0, max_delay_seconds=1.0)
    assert _delivered(delayed, 0.0) == []  # held back: nothing due yet (the draw is not 0)
    assert delayed.close().undelivered_at_stop == 3
    assert _delivered(delayed, 1.0) == [1, 2, 3]
    assert (delayed.counts.delayed_batches, delayed.counts.delayed) == (1, 3)

    reordered = feed(reorder=1.0)
    assert _delivered(reordered, 0.0) == []
    assert sorted(_delivered(reordered, 2.0)) == [1, 2, 3]
    assert reordered.counts.reordered == 3

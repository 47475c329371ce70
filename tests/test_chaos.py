"""A small chaos scenario per queue type (ADR 0013): concurrent ingest with retries, three relays at once
with 15 % faults (lost responses included), two of them separate processes killed with SIGKILL and one
in-process relay crashed by a kill switch, then a clean drain. The full-size figures come from
`python -m chaos` (README, Guarantees)."""

from __future__ import annotations

import pytest

from chaos.runner import Scenario, run_scenario

pytestmark = pytest.mark.server


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
    )

    figures = run_scenario(scenario)

    details = figures.as_dict()
    assert figures.accepted == 120, details
    assert figures.faults_total > 0, details
    assert figures.simulated_kills >= 1, details
    assert figures.sigkills >= 1, details
    assert figures.max_concurrent_relays >= 2, details
    assert figures.lost == 0, details
    assert figures.wrong_payload == 0, details
    assert figures.stuck_entries == 0, details
    assert figures.regressions == 0, details
    assert figures.vanished == 0, details
    assert not figures.ingest_bugs, details
    assert figures.queued == figures.accepted, details
    if fifo:
        assert figures.duplicates == 0, details
        assert figures.order_violations == 0, details
    else:
        assert figures.duplicates_unexplained == 0, details
    assert figures.ok, details

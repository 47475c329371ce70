"""A small chaos scenario per queue type (ADR 0013): concurrent ingest with retries, three relays at once
with 15 % faults (lost responses included), two of them separate processes killed with SIGKILL and one
in-process relay crashed by a kill switch, then a clean drain. The full-size figures come from
`python -m chaos` (README, Guarantees)."""

from __future__ import annotations

import pytest

from chaos.checker import Accepted, order_violations_in
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
        assert figures.order_violations == 0, figures.order_violation_samples
    else:
        assert figures.duplicates_unexplained == 0, details
    assert figures.ok, details


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

"""`outbox demo --fifo` checks and shows FIFO order per group, and fails when a group is out of order."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from outbox.local import demo
from outbox.local.demo import DemoReport, run_demo
from outbox.local.ordering import group_order_violations
from tests.conftest import run_outbox


def _summary(output: str) -> dict[str, str]:
    return {
        row.split("│")[1].strip(): row.split("│")[2].strip()
        for row in output.splitlines()
        if row.count("│") == 3
    }


def _received(*indexes: int, group_of: Any = lambda n: f"g{n % 2}") -> list[dict[str, Any]]:
    return [
        {
            "MessageAttributes": {"message_id": {"StringValue": f"m{n}"}},
            "Attributes": {"MessageGroupId": group_of(n)},
        }
        for n in indexes
    ]


ACCEPTED = [(f"m{n}", f"g{n % 2}") for n in range(6)]


def test_groups_received_in_order_have_no_violations() -> None:
    # g1 interleaved with g0, a late duplicate of m0, and m5 lost: none is an order violation
    assert group_order_violations(_received(0, 1, 2, 0, 3, 4), ACCEPTED) == {}


def test_a_group_received_out_of_order_is_reported() -> None:
    violations = group_order_violations(_received(0, 1, 4, 3, 2, 5), ACCEPTED)

    assert violations == {"g0": ["g0: #4 received before #2"]}


def test_a_message_received_in_another_group_is_reported() -> None:
    violations = group_order_violations(
        _received(0, 1, 2, 3, group_of=lambda n: "g9" if n == 3 else f"g{n % 2}"), ACCEPTED
    )

    assert violations == {"g1": ["g1: #3 received in group 'g9'"]}


def test_a_violation_makes_the_demo_not_ok_and_is_named() -> None:
    report = DemoReport(accepted=20, received=20, unique_received=20, fifo=True, groups=10)
    report.statuses["QUEUED"] = 20
    assert report.ok
    report.order_violations = {"customer-3": ["customer-3: #13 received before #3"]}
    console = Console(file=io.StringIO(), width=200)

    demo._print_summary(console, report, fail_rate=0.0)

    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert not report.ok
    assert _summary(output)["FIFO order per group"] == "9/10 groups in order (out of order: customer-3)"
    assert "out of order customer-3: #13 received before #3" in output
    assert "NOT OK: a FIFO group was received out of order" in output


def test_a_standard_demo_has_no_order_row() -> None:
    report = DemoReport(accepted=1, received=1, unique_received=1)
    report.statuses["QUEUED"] = 1
    console = Console(file=io.StringIO(), width=200)

    demo._print_summary(console, report, fail_rate=0.0)

    assert "FIFO order per group" not in _summary(console.file.getvalue())  # type: ignore[attr-defined]


@pytest.mark.server
def test_the_fifo_demo_shows_every_group_in_order() -> None:
    result = run_outbox("demo", "--messages", "30", "--fifo", "--fail-rate", "0.3", "--seed", "5")

    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(result.stdout)
    assert summary["accepted (202)"] == "30"
    assert summary["lost"] == "0"
    assert summary["FIFO order per group"] == "10/10 groups in order"
    assert "OK" in result.stdout


@pytest.mark.server
def test_the_fifo_demo_exits_non_zero_when_a_group_is_out_of_order(monkeypatch: pytest.MonkeyPatch) -> None:
    drain = demo.drain_queue

    def reversed_drain(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return drain(*args, **kwargs)[::-1]  # every group's messages the wrong way round

    monkeypatch.setattr(demo, "drain_queue", reversed_drain)
    console = Console(file=io.StringIO(), width=200)

    code = run_demo(console, messages=20, fifo=True, fail_rate=0.0, seed=1, consumer=False)

    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert code == 1, output
    assert _summary(output)["FIFO order per group"].startswith(
        "0/10 groups in order (out of order: customer-0"
    )
    assert "NOT OK: a FIFO group was received out of order" in output

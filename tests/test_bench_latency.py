"""`python -m bench.latency` at a small rate: every accepted message reaches QUEUED and the figures are
consistent. Never an upper bound on time: the figures are moto's, and are reported, not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.latency import Summary, main, nearest_rank

SUMMARY_KEYS = {"n", "p50", "p90", "p99", "max"}


@pytest.mark.server
@pytest.mark.parametrize("queue", [[], ["--fifo"]], ids=["standard", "fifo"])
def test_every_accepted_message_is_queued_and_the_figures_are_ordered(
    queue: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--rate", "5", "--seconds", "3", "--relay-every", "1", "--output", str(tmp_path), *queue])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads((tmp_path / "latency.json").read_text(encoding="utf-8"))
    counts = data["counts"]
    assert set(counts) == {"sent", "accepted", "refused", "queued", "not_queued"}
    assert counts["sent"] == 15
    assert counts["accepted"] == counts["queued"] == counts["sent"] - counts["refused"] > 0
    assert (counts["not_queued"], data["not_queued"]) == (0, {})
    for key, n in (("delivery_seconds", counts["queued"]), ("post_round_trip_seconds", counts["sent"])):
        figures = data[key]
        assert set(figures) == SUMMARY_KEYS
        assert figures["n"] == n
        assert 0 <= figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]
    assert data["achieved_rate"] > 0
    assert data["serve_exit_code"] == 0
    assert data["serve_options"][:2] == ["outbox", "serve"]
    assert "--relay-every" in data["serve_options"]
    assert data["options"]["fifo"] == ("--fifo" in data["serve_options"]) == bool(queue)
    assert data["command"].startswith("python -m bench.latency --rate 5")
    markdown = (tmp_path / "latency.md").read_text(encoding="utf-8")
    assert markdown in out
    assert "p50 ≤ 1 s, p99 ≤ 2.5 s" in markdown
    assert "Traceback" not in err


def test_a_serve_that_cannot_start_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--rate", "5", "--seconds", "1", "--relay-every", "0.1", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("bench.latency: outbox serve exited with code 2")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "latency.json").exists()


def test_nearest_rank_is_an_observed_value() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert [nearest_rank(values, p) for p in (1, 50, 90, 99, 100)] == [1.0, 50.0, 90.0, 99.0, 100.0]
    assert nearest_rank([0.3, 0.1, 0.2], 50) == 0.2
    assert nearest_rank([0.3, 0.1, 0.2], 99) == 0.3  # few samples: the high percentiles are the max
    assert nearest_rank([7.0], 50) == 7.0


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_nearest_rank_refuses_a_percent_out_of_range(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        nearest_rank([1.0], percent)


def test_nearest_rank_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 50)


def test_summary_of_nothing_is_empty_not_zero() -> None:
    assert Summary.of([]) == Summary(0, None, None, None, None)
    assert Summary.of([2.0, 1.0]) == Summary(2, p50=1.0, p90=2.0, p99=2.0, max=2.0)

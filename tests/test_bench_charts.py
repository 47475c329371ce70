"""The benchmark charts (issue #17), drawn from the committed JSON: every file is an SVG with the labels the
README refers to, a missing or bad input is one line and never a traceback, and the same JSON gives the same
bytes. Never a timing."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench import charts
from outbox.cdk.bundling import runtime_requirements

COMMITTED = charts.RESULTS
SVG = "{http://www.w3.org/2000/svg}svg"
FILES = ("cost-per-message.svg", "latency.svg", "consumer-cost.svg")


def _copy(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or ("latest.json", "latency.json", "consumer.json"):
        shutil.copy(COMMITTED / name, folder / name)
    return folder


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((COMMITTED / name).read_text(encoding="utf-8"))
    return data


class _Texts:
    """An XML parser's target that keeps the root's tag and every comment."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.comments: list[str] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.root = self.root or tag

    def comment(self, text: str) -> None:
        # A comment cannot hold "--": matplotlib writes "- -" (as in `--rate`).
        self.comments.append(text.strip().replace("- -", "--"))

    def close(self) -> _Texts:
        return self


def _texts(path: Path) -> list[str]:
    """Every text of the chart, one per line. Glyphs are drawn as paths, and matplotlib puts each line of
    text beside them as an XML comment."""
    target = _Texts()
    parser = ET.XMLParser(target=target)  # noqa: S314 - our own output
    parser.feed(path.read_bytes())
    parser.close()
    assert target.root == SVG
    return target.comments


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _copy(tmp_path_factory.mktemp("results"))
    assert charts.main(["--results", str(folder)]) == 0
    return folder


def test_every_chart_is_an_svg_beside_its_json(drawn: Path) -> None:
    for name in FILES:
        texts = _texts(drawn / name)
        assert texts, name
        caption = " ".join(texts)
        assert "Source:" in caption
        assert "written by `python -m bench" in caption


def test_the_cost_chart_stacks_up_to_the_tables_totals(drawn: Path) -> None:
    texts = _texts(drawn / "cost-per-message.svg")
    for name in ("ours", "naive", "floor"):
        assert name in texts
    for label in ("DynamoDB writes, ingest", "DynamoDB writes, relay", "DynamoDB reads, relay"):
        assert label in texts
    assert "SQS requests, relay" in texts
    assert "$ per million messages (ingest + relay)" in texts
    data = _json("latest.json")
    if any(scenario.get("through_s3") for scenario in data["scenarios"]):
        assert {"S3 requests, ingest", "S3 requests, relay"} <= set(texts)
    for scenario in data["scenarios"]:
        where = ", payload in S3" if scenario.get("through_s3") else ""
        title = f"{scenario['payload_kb']} KB message ({scenario['message_item_bytes']:,}-byte item{where})"
        assert title in texts
        for name, load in (("ours", "ingest"), ("naive", "naive_ingest")):  # naive's load: payloads inline
            ingest = scenario[load]["dollars_per_million"]
            assert f"${ingest + scenario[name]['cost']['dollars_per_million']:,.2f}" in texts
        assert f"${sum(scenario['floor']['dollars_per_million'].values()):,.2f}" in texts
        assert f"{scenario['ours']['cost']['calls_per_message']:.3f} calls" in texts
    assert "written by `python -m bench`" in " ".join(texts)


def test_the_latency_chart_marks_the_percentiles_and_says_they_are_all_there_is(drawn: Path) -> None:
    texts = _texts(drawn / "latency.svg")
    data = _json("latency.json")
    for name in ("p50", "p90", "p99", "max"):
        assert texts.count(name) == 2  # 202 -> QUEUED and the POST round trip
        assert f"{data['delivery_seconds'][name]:.3f} s" in texts
    caption = " ".join(texts)
    assert "202 → QUEUED" in caption
    assert f"(n={data['delivery_seconds']['n']})" in caption
    assert "not per-message samples" in caption
    assert data["command"] in caption


def test_the_consumer_chart_shows_both_consumers_by_operation(drawn: Path) -> None:
    texts = _texts(drawn / "consumer-cost.svg")
    data = _json("consumer.json")
    assert {"ours", "Powertools", "operation"} <= set(texts)
    for side in ("ours", "baseline"):
        for group in ("first_delivery", "duplicate_delivery", "all_deliveries"):
            cost = data[side][group]
            assert f"{cost['write_units_per_message']:.2f} WRU" in texts
            assert set(cost["write_units_by_operation"]) <= set(texts)
    assert "DynamoDB write units per message" in texts


def test_the_same_json_gives_the_same_bytes_in_any_folder(drawn: Path, tmp_path: Path) -> None:
    again = charts.draw(drawn, tmp_path / "again")
    assert all(outcome.ok for outcome in again)
    for name in FILES:
        first = (drawn / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == first
        assert b"<dc:date>" not in first
        assert str(drawn).encode() not in first  # no absolute path in a caption


def test_a_missing_json_is_skipped_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(tmp_path / "results", "latest.json")
    assert charts.main(["--results", str(folder), "--output", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"wrote {tmp_path / 'out' / 'cost-per-message.svg'}"
    assert lines[1].startswith("skipped latency.svg: no ")
    assert lines[1].endswith("(run `python -m bench.latency` first)")
    assert lines[2].startswith("skipped consumer-cost.svg: no ")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cost-per-message.svg"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{}", "no delivery_seconds"),
        ("[1, 2]", "not a JSON object"),
        ("{not json", "is not JSON"),
        (
            '{"delivery_seconds": {"p50": "fast"}, "post_round_trip_seconds": {}, "options": {}}',
            "not a number",
        ),
    ],
)
def test_a_bad_json_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    (tmp_path / "latency.json").write_text(content, encoding="utf-8")
    assert charts.main(["--results", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("cannot draw latency.svg")
    assert reason in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in out + err
    assert not (tmp_path / "latency.svg").exists()


def test_help_names_both_folders(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        charts.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--results" in out
    assert "--output" in out


def test_a_results_folder_that_is_not_there_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        charts.main(["--results", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2


@pytest.fixture
def quick_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m bench` with the benchmark itself replaced: the committed document, no cold imports."""
    monkeypatch.setattr(bench_main, "run_benchmark", lambda **_: [])
    monkeypatch.setattr(bench_main, "import_seconds", lambda module: 0.0)
    monkeypatch.setattr(bench_main, "markdown", lambda *_, **__: "# the table\n")
    monkeypatch.setattr(bench_main, "document", lambda *_, **__: _json("latest.json"))


@pytest.mark.usefixtures("quick_bench")
def test_a_benchmark_run_draws_its_chart_beside_its_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main.main(["--no-asset", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "latest.md").read_text(encoding="utf-8") == "# the table\n"
    assert (tmp_path / "latest.json").is_file()
    assert "ours" in _texts(tmp_path / "cost-per-message.svg")
    err = capsys.readouterr().err
    assert f"bench: wrote {tmp_path / 'cost-per-message.svg'}" in err
    assert "bench: skipped latency.svg" in err


@pytest.mark.usefixtures("quick_bench")
def test_a_chart_that_fails_keeps_the_tables_and_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[charts.Outcome]:
        raise RuntimeError("no display")

    monkeypatch.setattr(charts, "draw", broken)
    assert bench_main.main(["--no-asset", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "latest.md").is_file()
    assert (tmp_path / "latest.json").is_file()
    assert not (tmp_path / "cost-per-message.svg").exists()
    err = capsys.readouterr().err
    assert "bench: charts not drawn (RuntimeError: no display); the tables are saved" in err


def test_the_plotting_library_stays_out_of_the_lambda_asset() -> None:
    names = {requirement.partition("==")[0] for requirement in runtime_requirements()}
    assert not names & {"matplotlib", "numpy", "pillow", "fonttools", "contourpy", "kiwisolver", "cycler"}

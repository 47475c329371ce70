"""`python -m bench.consumer` at a small size: the counts add up (messages, side effects exactly once,
duplicates counted, per-message figures consistent with the calls billed). Never a timing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.consumer import Side, _check, main
from bench.run import cost_of
from outbox.testing.calls import CallCounter

MESSAGES = 20
DUPLICATES = 4  # 20 % of 20


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    output = tmp_path_factory.mktemp("consumer")
    code = main(["--messages", str(MESSAGES), "--duplicates", "0.2", "--output", str(output)])
    data = json.loads((output / "consumer.json").read_text(encoding="utf-8"))
    return code, data, (output / "consumer.md").read_text(encoding="utf-8")


def _consistent(cost: dict[str, Any], per: int) -> None:
    assert cost["messages"] == per
    assert cost["calls"] == sum(cost["calls_by_operation"].values())
    assert cost["calls_by_operation"] == cost["counted_calls_by_operation"]  # the meter saw every call
    assert math.isclose(cost["write_units"], sum(cost["write_units_by_operation"].values()))
    assert math.isclose(cost["read_units"], sum(cost["read_units_by_operation"].values()))
    assert cost["sqs_requests"] == 0  # only the consumers' DynamoDB clients are billed
    assert math.isclose(cost["calls_per_message"], cost["calls"] / per)
    assert math.isclose(cost["write_units_per_message"], cost["write_units"] / per)
    assert math.isclose(
        cost["dollars_per_million"],
        cost["write_units_per_message"] * 0.625 + cost["read_units_per_message"] * 0.125,
    )


def test_the_run_passes_its_checks_and_writes_both_files(run: tuple[int, dict[str, Any], str]) -> None:
    code, data, markdown = run
    assert code == 0
    assert data["checks"] == {"ok": True, "problems": []}
    assert (
        data["command"]
        == f"python -m bench.consumer --messages {MESSAGES} --duplicates 0.2 --output "
        + (data["command"].rsplit(" ", 1)[1])
    )
    assert markdown.startswith("# Consumer benchmark")
    assert f"Command: `{data['command']}`" in markdown
    assert data["deliveries"] == {
        "messages": MESSAGES,
        "duplicates": DUPLICATES,
        "total": MESSAGES + DUPLICATES,
        "batches": 2 + 1,  # 20 first deliveries in batches of 10, then the 4 duplicates
    }


@pytest.mark.parametrize("side", ["ours", "baseline"])
def test_each_side_effect_is_written_exactly_once_and_every_duplicate_is_suppressed(
    run: tuple[int, dict[str, Any], str], side: str
) -> None:
    result = run[1][side]
    assert result["shipments"] == result["shipments_applied_once"] == MESSAGES
    assert result["work_runs"] == MESSAGES
    assert result["duplicates_suppressed"] == DUPLICATES
    assert result["batch_item_failures"] == 0
    assert result["refused_calls"]["first"] == {}
    assert sum(result["refused_calls"]["duplicate"].values()) == DUPLICATES


def test_ours_completes_every_message_and_the_baseline_leaves_them_queued(
    run: tuple[int, dict[str, Any], str],
) -> None:
    data = run[1]
    assert data["ours"]["outbox_statuses"] == {"COMPLETED": MESSAGES}
    assert data["baseline"]["outbox_statuses"] == {"QUEUED": MESSAGES}


@pytest.mark.parametrize("side", ["ours", "baseline"])
def test_per_message_figures_add_up(run: tuple[int, dict[str, Any], str], side: str) -> None:
    result = run[1][side]
    first, duplicate, total = result["first_delivery"], result["duplicate_delivery"], result["all_deliveries"]
    _consistent(first, MESSAGES)
    _consistent(duplicate, DUPLICATES)
    _consistent(total, MESSAGES)
    assert total["calls"] == first["calls"] + duplicate["calls"]
    assert math.isclose(total["write_units"], first["write_units"] + duplicate["write_units"])
    assert math.isclose(total["read_units"], first["read_units"] + duplicate["read_units"])
    assert first["failed_calls"] == 0
    assert duplicate["failed_calls"] == DUPLICATES  # each duplicate is one refused conditional write


def test_the_calls_are_the_ones_each_consumer_is_meant_to_make(run: tuple[int, dict[str, Any], str]) -> None:
    data = run[1]
    sizes = data["item_bytes"]
    ours, baseline = data["ours"], data["baseline"]
    # ours: the claim, then one transaction of COMPLETED + the shipment; a duplicate: the refused claim
    assert ours["first_delivery"]["calls_by_operation"] == {
        "TransactWriteItems": MESSAGES,
        "UpdateItem": MESSAGES,
    }
    assert ours["duplicate_delivery"]["calls_by_operation"] == {"UpdateItem": DUPLICATES}
    # baseline: INPROGRESS record, the shipment, COMPLETED record; a duplicate: the refused PutItem, whose
    # ReturnValuesOnConditionCheckFailure spares the GetItem
    assert baseline["first_delivery"]["calls_by_operation"] == {
        "PutItem": MESSAGES,
        "UpdateItem": 2 * MESSAGES,
    }
    assert baseline["duplicate_delivery"]["calls_by_operation"] == {"PutItem": DUPLICATES}
    # write units by DynamoDB's rules, from the item sizes the run measured
    message_units = math.ceil(max(sizes["message_queued"], sizes["message_claimed"]) / 1024)
    completed_units = math.ceil(max(sizes["message_claimed"], sizes["message_completed"]) / 1024)
    assert sizes["shipment"] == 100
    assert sizes["idempotency_record"] <= 1024
    assert ours["first_delivery"]["write_units_per_message"] == message_units + 2 * (completed_units + 1)
    assert ours["duplicate_delivery"]["write_units_per_message"] == math.ceil(
        sizes["message_completed"] / 1024
    )
    assert baseline["first_delivery"]["write_units_per_message"] == 3
    assert baseline["duplicate_delivery"]["write_units_per_message"] == 1
    for side in (ours, baseline):
        for cost in (side["first_delivery"], side["duplicate_delivery"]):
            assert cost["read_units"] == 0


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench.consumer")
    for option in ("--messages", "--payload-kb", "--duplicates", "--batch-size", "--output"):
        assert option in out


@pytest.mark.parametrize(
    "options", [["--duplicates", "1.5"], ["--messages", "0"], ["--payload-kb", "0.3"], ["--payload-kb", "-1"]]
)
def test_impossible_options_are_refused(
    options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*options, "--output", str(tmp_path)])
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_side_effect_applied_twice_or_a_message_left_queued_fails_the_run() -> None:
    nothing = cost_of([], CallCounter(), MESSAGES)

    def side(name: str, *, once: int, statuses: dict[str, int]) -> Side:
        return Side(
            name=name,
            first=nothing,
            duplicates=None,
            total=nothing,
            runs=MESSAGES,
            suppressed=0,
            batch_item_failures=0,
            shipments=MESSAGES,
            shipments_applied_once=once,
            statuses=statuses,
        )

    good = _check(
        side("ours", once=MESSAGES, statuses={"COMPLETED": MESSAGES}),
        side("baseline", once=MESSAGES, statuses={"QUEUED": MESSAGES}),
        messages=MESSAGES,
        duplicates=0,
    )
    assert good == []
    bad = _check(
        side("ours", once=MESSAGES, statuses={"COMPLETED": MESSAGES - 1, "QUEUED": 1}),
        side("baseline", once=MESSAGES - 1, statuses={"QUEUED": MESSAGES}),
        messages=MESSAGES,
        duplicates=0,
    )
    assert len(bad) == 2
    assert bad[0].startswith("baseline: 20 shipments, 19 written exactly once")
    assert bad[1].startswith("ours: outbox statuses")

"""`bench.latency_model`: the arithmetic of the modeled AWS latency and idle cost (issue #14, ADR 0017).

Everything here is computed from `bench/model.py`'s figures, never timed on this machine: the tests check
that the routes add up their named steps, that the percentiles of a uniform wait are what they should be,
that the dollars follow from the prices, and that the copies of the stack's settings match the stack.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import latency_model as lm
from bench import model
from outbox.core import usage
from outbox.core.settings import Settings
from relay.core import RelayConfig

KB = 1024
DOORBELL_STEPS = (
    "stream record",
    "next poll",
    "GetRecords",
    "Invoke",
    "Query",
    "claim",
    "fetch",
    "send",
    "finalize",
)


def _typical(operation: str, items: int, moved: int = 0) -> float:
    """bench/model.py's latency of one call, written out: base + per item + bytes at 50 MB/s."""
    latency = model.LATENCY.get(operation, model.DEFAULT_LATENCY)
    return latency.base_ms + latency.per_item_ms * items + moved / model.TRANSFER_BYTES_PER_MS


def _batch(moved: int) -> float:
    return (
        _typical("TransactWriteItems", 1)
        + _typical("BatchGetItem", 1, moved)
        + _typical("SendMessageBatch", 1, moved)
        + _typical("TransactWriteItems", 2)
    )


# -- percentiles of a uniform wait -----------------------------------------------------------------


def test_a_wait_uniform_over_a_minute_is_30_s_at_p50_and_59_4_s_at_p99() -> None:
    assert lm.uniform_percentile(60_000, 0.50) == 30_000
    assert lm.uniform_percentile(60_000, 0.99) == pytest.approx(59_400)
    assert lm.uniform_percentile(250, 0.99) == pytest.approx(247.5)  # four polls a second
    assert lm.uniform_percentile(250, 0.0) == 0
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="fraction"):
            lm.uniform_percentile(1000, bad)


# -- routes ----------------------------------------------------------------------------------------


def test_the_doorbell_route_is_the_sum_of_its_named_steps() -> None:
    route = lm.doorbell_route(message_bytes=KB)
    assert len(route.steps) == len(DOORBELL_STEPS)
    for step, expected in zip(route.steps, DOORBELL_STEPS, strict=True):
        assert expected in step.name
        assert step.basis in {lm.PUBLISHED, lm.MODELED, lm.ASSUMED, lm.ARITHMETIC}
        assert 0 < step.p50_ms <= step.p99_ms
    assert route.p50_ms == pytest.approx(sum(step.p50_ms for step in route.steps))
    assert route.p99_ms == pytest.approx(sum(step.p99_ms for step in route.steps))

    # The same sums written out from the figures: stream, poll phase, then every call at typical (p50) or
    # at typical x the tail factor (p99).
    calls = _typical("GetRecords", 1) + model.INVOKE_OVERHEAD_MS.value + _typical("Query", 1) + _batch(KB)
    factor = model.CALL_P99_FACTOR.value
    assert route.p50_ms == pytest.approx(model.STREAM_RECORD_P50_MS.value + 125.0 + calls)
    assert route.p99_ms == pytest.approx(model.STREAM_RECORD_P99_MS.value + 247.5 + factor * calls)


def test_the_poll_phase_is_the_only_published_latency_and_it_follows_the_poll_rate() -> None:
    route = lm.doorbell_route(message_bytes=KB)
    (poll,) = (step for step in route.steps if step.basis == lm.PUBLISHED)
    period = 1000 / model.STREAM_POLLS_PER_SECOND.value
    assert poll.p50_ms == pytest.approx(period / 2)
    assert poll.p99_ms == pytest.approx(0.99 * period)
    assert poll.source == model.LAMBDA_DYNAMODB_DOC


def test_the_sweep_route_waits_a_uniform_tick_then_one_pass() -> None:
    route = lm.sweep_route(shards=8, workers=4, schedule_seconds=60, message_bytes=KB)
    wait, *rest = route.steps
    assert wait.p50_ms == 30_000
    assert wait.p99_ms == pytest.approx(59_400)
    assert wait.basis == lm.ARITHMETIC
    # 8 shards over 4 workers: the entry's shard and one empty shard are read in turn, then the batch.
    calls = model.INVOKE_OVERHEAD_MS.value + _typical("Query", 1) + _typical("Query", 0) + _batch(KB)
    assert sum(step.p50_ms for step in rest) == pytest.approx(calls)
    assert route.p50_ms == pytest.approx(30_000 + calls)
    assert route.p99_ms == pytest.approx(59_400 + model.CALL_P99_FACTOR.value * calls)


def test_a_sweep_with_one_query_per_worker_has_no_empty_read_step() -> None:
    route = lm.sweep_route(shards=4, workers=4, schedule_seconds=120, message_bytes=KB)
    assert not any("empty" in step.name for step in route.steps)
    assert route.steps[0].p50_ms == 60_000


@pytest.mark.parametrize(
    ("shards", "workers", "expected"), [(8, 4, 2), (1, 4, 1), (4, 4, 1), (10, 4, 3), (3, 0, 3)]
)
def test_sweep_queries_share_the_shards_out_among_the_workers(
    shards: int, workers: int, expected: int
) -> None:
    assert lm.sweep_queries(shards, workers) == expected


def test_the_doorbell_beats_the_sweep_by_the_tick() -> None:
    doorbell = lm.doorbell_route(message_bytes=KB)
    sweep = lm.sweep_route(shards=8, workers=4, schedule_seconds=60, message_bytes=KB)
    assert doorbell.p99_ms < sweep.p50_ms
    assert lm.cold_start_ms() == model.COLD_PLATFORM_MS.value + model.COLD_IMPORT_MS.value


# -- cost ------------------------------------------------------------------------------------------


def test_a_minute_schedule_runs_43_800_times_a_month() -> None:
    assert lm.runs_per_month(60) == pytest.approx(43_800)
    assert lm.runs_per_month(300) == pytest.approx(8_760)


def test_duration_is_billed_by_the_started_millisecond() -> None:
    assert lm.billed_seconds(22.0) == pytest.approx(0.022)
    assert lm.billed_seconds(22.1) == pytest.approx(0.023)
    assert lm.duration_dollars(1000.0, 1024) == pytest.approx(model.LAMBDA_PRICE_PER_GB_SECOND_ARM.value)


def test_an_idle_run_is_the_handler_and_each_workers_empty_queries() -> None:
    expected = model.HANDLER_OVERHEAD_MS.value + 2 * _typical("Query", 0)
    assert lm.idle_run_ms(shards=8, workers=4) == pytest.approx(expected)


def test_idle_cost_follows_from_the_prices_and_the_stream_adds_nothing() -> None:
    lines = lm.idle_costs(shards=8, schedule_seconds=60, memory_mb=512, run_ms=22.0)
    requests, duration, reads, schedule, *stream = lines
    assert requests.before == pytest.approx(43_800 * 0.20e-6)
    assert duration.before == pytest.approx(43_800 * 0.022 * 0.5 * 0.0000133334)
    assert reads.before == pytest.approx(43_800 * 8 * 1 * 0.125e-6)  # an empty consistent Query: 1 unit
    assert schedule.before == schedule.after == 0
    for line in (requests, duration, reads):
        assert line.before == line.after
    assert stream
    for line in stream:
        assert line.before is None
        assert line.after == 0
    before, after = lm.total_before(lines), lm.total_after(lines)
    assert before == pytest.approx(sum(line.before or 0.0 for line in lines))
    assert after == pytest.approx(before)
    assert before == pytest.approx(43_800 * (0.20e-6 + 0.022 * 0.5 * 0.0000133334 + 8 * 0.125e-6))


def test_cloudwatch_lines_stay_beside_the_totals_and_only_the_alarm_is_new() -> None:
    alarm, metrics, logs = lm.named_costs(schedule_seconds=60, metrics=9)
    assert (alarm.before, alarm.after) == (None, model.CLOUDWATCH_ALARM_MONTH.value)
    assert metrics.before == metrics.after == pytest.approx(9 * 0.30)
    assert logs.before == logs.after == pytest.approx(43_800 * 2048 / 1024**3 * 0.50)


def test_an_idle_run_publishes_every_count_and_the_oldest_age_but_no_batch_latency() -> None:
    names = lm.idle_metric_names()
    assert len(names) == len(set(names)) == 9
    assert "OldestPendingAgeSeconds" in names
    assert "BatchLatency" not in names


def test_a_woken_invocation_for_one_message_adds_up() -> None:
    woken = lm.woken_cost(message_bytes=KB, memory_mb=512)
    expected_ms = model.HANDLER_OVERHEAD_MS.value + _typical("Query", 1) + _batch(KB) + _typical("Query", 0)
    assert woken.run_ms == pytest.approx(expected_ms)
    assert woken.request == model.LAMBDA_PRICE_PER_REQUEST.value
    assert woken.duration == pytest.approx(math.ceil(expected_ms) / 1000 * 0.5 * 0.0000133334)
    assert woken.reads == pytest.approx(2 * usage.PRICE_PER_READ_UNIT)
    assert woken.dollars == pytest.approx(woken.request + woken.duration + woken.reads)


# -- figures and their sources ---------------------------------------------------------------------


def test_every_published_figure_names_where_it_is_published_and_every_assumption_says_so() -> None:
    for _name, figure in lm.FIGURES:
        if figure.assumption:
            continue
        assert figure.source.startswith(("https://", "bench/")), figure
    report = _report()
    assumptions = sum(1 for _, figure in lm.FIGURES if figure.assumption)
    figures_section = report.split("## Figures and sources", 1)[1]
    assert figures_section.count("| **yes** |") == assumptions
    assert figures_section.count("| no |") == len(lm.FIGURES) - assumptions


def _report() -> str:
    return lm.markdown(
        command="python -m bench.latency_model",
        shards=8,
        workers=4,
        schedule_seconds=60,
        memory_mb=512,
        message_kb=1,
        run_ms=22.0,
        run_ms_measured=False,
        metrics=9,
    )


def test_the_report_shows_both_routes_and_both_totals() -> None:
    report = _report()
    doorbell = lm.doorbell_route(message_bytes=KB)
    sweep = lm.sweep_route(shards=8, workers=4, schedule_seconds=60, message_bytes=KB)
    assert f"| {doorbell.p50_ms / 1000:,.3f} s | {doorbell.p99_ms / 1000:,.3f} s |" in report
    assert f"| {sweep.p50_ms / 1000:,.3f} s | {sweep.p99_ms / 1000:,.3f} s |" in report
    lines = lm.idle_costs(shards=8, schedule_seconds=60, memory_mb=512, run_ms=22.0)
    total = f"**${lm.total_before(lines):,.4f}** | **${lm.total_after(lines):,.4f}**"
    assert total in report


# -- the copies of the stack's settings --------------------------------------------------------------


def test_the_defaults_are_the_stacks() -> None:
    assert Settings.outbox_shards == 8
    assert Settings.schedule_seconds == 60
    assert RelayConfig().parallel_shards == 4
    from outbox.local.serve import STREAM_POLL_SECONDS  # noqa: PLC0415 - the local stand-in's poll period

    poll_period = 1 / model.STREAM_POLLS_PER_SECOND.value
    assert poll_period == STREAM_POLL_SECONDS


def test_the_relay_memory_and_architecture_are_the_constructs() -> None:
    pytest.importorskip("aws_cdk")
    from aws_cdk import aws_lambda  # noqa: PLC0415 - loads the CDK (and Node) only here

    from outbox.cdk.bundling import ARCHITECTURE  # noqa: PLC0415
    from outbox.cdk.construct import RELAY_MEMORY_MB  # noqa: PLC0415

    assert lm.RELAY_MEMORY_MB == RELAY_MEMORY_MB
    assert ARCHITECTURE.name == aws_lambda.Architecture.ARM_64.name  # the duration price is Arm's


# -- the command -----------------------------------------------------------------------------------


def test_main_prints_the_table_and_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lm.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    written = (tmp_path / lm.OUTPUT_NAME).read_text(encoding="utf-8")
    assert written in out
    assert "Command: `python -m bench.latency_model --output" in written
    assert "(modeled: the handler's own" in written


def test_a_given_idle_run_time_replaces_the_modeled_one(tmp_path: Path) -> None:
    assert lm.main(["--idle-run-ms", "40", "--output", str(tmp_path)]) == 0
    written = (tmp_path / lm.OUTPUT_NAME).read_text(encoding="utf-8")
    assert "(given with --idle-run-ms)" in written
    assert "40 ms billed each" in written


@pytest.mark.parametrize("argv", [["--shards", "0"], ["--idle-run-ms", "0"], ["--schedule-seconds", "-1"]])
def test_bad_arguments_are_refused(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lm.main([*argv, "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err
    assert not (tmp_path / lm.OUTPUT_NAME).exists()


def test_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lm.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "p50/p99" in out
    assert "--idle-run-ms" in out

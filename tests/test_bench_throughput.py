"""`bench.throughput`: the arithmetic of the modeled throughput table (issue #14).

No timing here: the CPU per message is given (`--cpu-ms`), never measured, and every rate follows from
bench/model.py's figures and the published quotas.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from bench import model
from bench import throughput as tp
from relay.core import RelayConfig

CPU_MS = 0.75


def test_partition_rate_is_1000_write_units_over_4() -> None:
    assert tp.SHARD_PARTITION_UNITS_PER_MESSAGE == 4.0
    assert tp.partition_rate() == 250.0


def test_batch_calls_follow_the_relay_config() -> None:
    calls = {record.operation: (record, share) for record, share in tp.batch_calls()}
    assert RelayConfig().batch_size == 49
    assert calls["SendMessageBatch"][1] == 5.0
    assert calls["TransactWriteItems"][0].items == 99
    assert calls["Query"][1] == pytest.approx(49 / 245)
    expected = sum(model.call_ms(record) * share for record, share in tp.batch_calls())
    assert tp.batch_aws_ms() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("memory", "share"), [(512, 512 / 1769), (1024, 1024 / 1769), (1769, 1.0), (3538, 1.0)]
)
def test_vcpu_is_proportional_to_memory_up_to_one(memory: int, share: float) -> None:
    assert tp.vcpu_share(memory) == pytest.approx(share)


def test_worker_rate_adds_cpu_to_the_calls() -> None:
    seconds = (tp.batch_aws_ms() + 49 * CPU_MS / (1024 / 1769)) / 1000
    assert tp.worker_rate(1024, CPU_MS) == pytest.approx(49 / seconds)
    assert tp.worker_rate(512, CPU_MS) < tp.worker_rate(1024, CPU_MS) < tp.worker_rate(1769, CPU_MS)


def test_shard_rate_is_the_min_of_worker_and_partition() -> None:
    for memory in tp.MEMORIES_MB:
        assert tp.shard_rate(memory, CPU_MS) == min(tp.worker_rate(memory, CPU_MS), 250.0)
    assert tp.shard_rate(1769, 0.0) == 250.0  # no CPU: the calls alone allow more than the partition


def test_rows_are_the_caps_of_shards_and_relays() -> None:
    for item in tp.table(CPU_MS):
        assert item.relays == math.ceil(item.shards / item.threads)
        assert item.relay_rate == pytest.approx(
            min(item.threads * item.shard_rate, tp.relay_cpu_rate(item.memory_mb, CPU_MS))
        )
        assert item.rate == pytest.approx(min(item.shards * item.shard_rate, item.relays * item.relay_rate))
        assert item.rate <= item.shards * 250.0
        assert item.default_rate <= item.rate


def test_default_table_quota_stops_short_of_10k() -> None:
    outbox = tp.TABLE_WRITE_UNITS_ON_DEMAND / tp.OUTBOX_TABLE_UNITS_PER_MESSAGE
    assert pytest.approx(4.09) == tp.OUTBOX_TABLE_UNITS_PER_MESSAGE
    assert tp.MESSAGES_TABLE_UNITS_PER_MESSAGE == 4.0
    assert outbox < tp.TARGET_RATE
    assert all(item.default_rate < tp.TARGET_RATE for item in tp.table(CPU_MS))


@pytest.mark.parametrize("cpu_ms", [0.5, CPU_MS, 1.0])
def test_the_10k_configuration_is_the_smallest_that_reaches_it(cpu_ms: float) -> None:
    rows = tp.table(cpu_ms)
    chosen = tp.smallest_sustaining(rows)
    assert chosen is not None
    assert chosen.rate >= tp.TARGET_RATE
    ordered = sorted(rows, key=tp.size_key)
    before = ordered[: ordered.index(chosen)]
    assert before
    assert all(item.rate < tp.TARGET_RATE for item in before)
    assert before[-1].rate < tp.TARGET_RATE
    assert chosen.shards * 250.0 >= tp.TARGET_RATE  # 40 shards at least: 64 of the table


def test_no_configuration_when_the_target_is_out_of_reach() -> None:
    assert tp.smallest_sustaining(tp.table(CPU_MS), target=1e9) is None


def test_quotas_to_raise_name_their_sources() -> None:
    chosen = tp.smallest_sustaining(tp.table(CPU_MS))
    assert chosen is not None
    text = "\n".join(tp.quotas_to_raise(chosen))
    for url in (
        tp.DYNAMODB_QUOTAS_DOC,
        tp.API_GATEWAY_QUOTAS_DOC,
        tp.SQS_QUOTAS_DOC,
        tp.LAMBDA_CONCURRENCY_DOC,
    ):
        assert url in text


def test_main_writes_the_table_with_assumed_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "throughput.md"
    assert tp.main(["--cpu-ms", str(CPU_MS), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert "assumed" in text
    assert "← 10k" in text
    assert tp.LAMBDA_MEMORY_DOC in text
    assert text in capsys.readouterr().out


def test_help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m bench.throughput", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        tp.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--cpu-ms" in out
    assert "--output" in out

"""Relays as separate processes (`outbox relay --once`) against the moto server, and the Lambda handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from outbox.local.emulator import EmbeddedAws
from outbox.local.events import local_context
from outbox.local.queue import message_id_of
from relay import handler as relay_handler
from tests.conftest import Outbox, ingest_messages, receive_all, run_outbox

pytestmark = pytest.mark.server


def _relay_process(endpoint: str, outbox: Outbox) -> subprocess.Popen[str]:
    env = {**os.environ, **outbox.resources.environment(), "AWS_ENDPOINT_URL": endpoint}
    return subprocess.Popen(
        [sys.executable, "-m", "outbox.cli", "relay", "--once", "--max-seconds", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_three_relay_processes_at_once_deliver_everything_once(
    moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    ids = ingest_messages(server_outbox, 300)

    processes = [_relay_process(moto_server.endpoint_url, server_outbox) for _ in range(3)]
    outputs = [process.communicate(timeout=240) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], [err for _, err in outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(summary["sent"] for summary in summaries) == 300, summaries
    assert server_outbox.entries() == []
    received = Counter(message_id_of(m) for m in receive_all(server_outbox.resources.queue_url))
    assert set(received) == set(ids)
    assert max(received.values()) == 1


def test_relay_once_with_a_bad_setting_exits_2_with_one_line(server_outbox: Outbox) -> None:
    result = run_outbox("relay", "--once", env={"OUTBOX_SHARDS": "many"})
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: OUTBOX_SHARDS: must be an integer, got 'many'"


def test_the_lambda_handler_returns_the_summary_and_emits_metrics(
    server_outbox: Outbox, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_messages(server_outbox, 5)
    relay_handler._relay_for.cache_clear()

    summary = relay_handler.handler(
        {"source": "aws.events", "detail-type": "Scheduled Event"}, local_context(30)
    )

    assert summary["sent"] == 5
    assert summary["drained"] is True
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "no EMF metrics were printed"
    metrics = emf[-1]
    assert _values(metrics["MessagesSent"]) == [5.0]
    assert _values(metrics["OldestPendingAgeSeconds"])[0] >= 0
    namespace = metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    assert namespace == "Outbox"
    relay_handler._relay_for.cache_clear()


def test_a_run_with_metrics_disabled_leaves_nothing_for_the_next_run(
    server_outbox: Outbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local runs (`outbox serve`, `relay --once`) disable metrics; their counts must not pile up in the
    process and come out with a later run's."""
    relay_handler._relay_for.cache_clear()
    ingest_messages(server_outbox, 3)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert relay_handler.handler({}, local_context(30))["sent"] == 3
    assert '"_aws"' not in capsys.readouterr().out

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    ingest_messages(server_outbox, 2)
    assert relay_handler.handler({}, local_context(30))["sent"] == 2

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [_values(metrics["MessagesSent"]) for metrics in emf] == [[2.0]]
    relay_handler._relay_for.cache_clear()


def _values(metric: float | list[float]) -> list[float]:
    """EMF writes one value as a number or as a one-element list."""
    return metric if isinstance(metric, list) else [metric]

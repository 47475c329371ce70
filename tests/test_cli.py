"""The `outbox` command as a user runs it: a subprocess against a moto server over HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from outbox.core.clients import dynamodb_client, reset_clients, sqs_client
from outbox.core.schema import outbox_table_definition
from outbox.local.emulator import EmbeddedAws
from tests.conftest import run_outbox

pytestmark = pytest.mark.server


@pytest.mark.parametrize("fifo", [False, True])
def test_init_creates_everything_and_a_second_run_is_harmless(
    moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch, fifo: bool
) -> None:
    prefix = f"cli-{'fifo' if fifo else 'std'}"
    args = [
        "init",
        "--endpoint-url",
        moto_server.endpoint_url,
        "--prefix",
        prefix,
        *(["--fifo"] if fifo else []),
    ]
    first = run_outbox(*args)
    second = run_outbox(*args)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines())
    assert exports["AWS_ENDPOINT_URL"] == moto_server.endpoint_url
    assert exports["MESSAGES_TABLE"] == f"{prefix}-messages"
    assert exports["QUEUE_URL"].endswith(f"{prefix}-queue.fifo" if fifo else f"{prefix}-queue")

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    reset_clients()
    tables = dynamodb_client().list_tables()["TableNames"]
    assert {f"{prefix}-messages", f"{prefix}-outbox"} <= set(tables)
    ttl = dynamodb_client().describe_time_to_live(TableName=f"{prefix}-messages")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    attributes = sqs_client().get_queue_attributes(QueueUrl=exports["QUEUE_URL"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["MaximumMessageSize"] == "1048576"
    assert "deadLetterTargetArn" in attributes["RedrivePolicy"]
    assert len(sqs_client().list_queues(QueueNamePrefix=prefix)["QueueUrls"]) == 2


def test_init_turns_on_the_stream_of_an_outbox_table_made_before_the_doorbell(
    moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    reset_clients()
    old = outbox_table_definition("before-doorbell-outbox")
    del old["StreamSpecification"]  # as `outbox init` created it before ADR 0017
    dynamodb_client().create_table(**old)  # type: ignore[arg-type]

    result = run_outbox("init", "--endpoint-url", moto_server.endpoint_url, "--prefix", "before-doorbell")

    assert result.returncode == 0, result.stderr
    table = dynamodb_client().describe_table(TableName="before-doorbell-outbox")["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    assert "LatestStreamArn" in table
    again = run_outbox("init", "--endpoint-url", moto_server.endpoint_url, "--prefix", "before-doorbell")
    assert again.returncode == 0, again.stderr  # a table that streams is left as it is


@pytest.mark.parametrize("fifo", [False, True])
def test_the_demo_delivers_everything_through_faults(fifo: bool) -> None:
    result = run_outbox(
        "demo",
        "--messages",
        "60",
        "--fail-rate",
        "0.3",
        *(["--fifo"] if fifo else []),
        env={"COLUMNS": "200"},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = {
        row.split("│")[1].strip(): row.split("│")[2].strip()
        for row in result.stdout.splitlines()
        if row.count("│") == 3
    }
    assert summary["accepted (202)"] == "60"
    assert '"_aws"' not in result.stdout  # no function's EMF metrics in the demo's own output
    assert summary["COMPLETED in DynamoDB"] == "60"  # through the consumer helper
    assert summary["side effects applied once / twice or more"] == "60/60 / 0"
    assert int(summary["duplicates suppressed by the helper"]) > 0  # the redeliveries really happened
    assert summary["lost"] == "0"
    assert not summary["faults injected into sends"].startswith("none")
    assert int(summary["send retries (tenacity)"]) > 0  # the faults really happened and were survived
    assert "OK" in result.stdout


def test_the_demo_without_a_consumer_leaves_every_message_queued() -> None:
    result = run_outbox("demo", "--messages", "20", "--no-consumer", env={"COLUMNS": "200"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "│ QUEUED in DynamoDB" in result.stdout
    assert "consumer receives" not in result.stdout


def test_an_unreachable_endpoint_is_one_clear_line_not_a_traceback() -> None:
    result = run_outbox("init", "--endpoint-url", "http://localhost:9")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "http://localhost:9" in result.stderr


def test_python_dash_m_outbox_is_the_outbox_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "outbox", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Transactional outbox for DynamoDB + SQS" in result.stdout

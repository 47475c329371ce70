"""The `outbox` command keeps the README's promise, run as a user runs it (a subprocess, a fresh shell):
user errors end as one line on stderr and a non-zero exit (2 for configuration and usage), never a
traceback; machine output is one JSON object per line whatever the terminal; the operations commands
need nothing of the local tools."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from outbox.core.clients import dynamodb_client
from outbox.local.emulator import EmbeddedAws
from outbox.local.queue import message_id_of
from relay.leases import ShardLeases
from tests.conftest import Outbox, ingest_messages, receive_all

pytestmark = pytest.mark.server

ISSUED_ID = "0190c6d2-0000-7000-8000-000000000000"
"""Well-formed (so the command makes the AWS call) and never issued."""
EMULATOR_EXPORTS = {
    "MESSAGES_TABLE",
    "PAYLOADS_TABLE",
    "OUTBOX_TABLE",
    "QUEUE_URL",
    "DLQ_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
}
"""What `outbox serve` exports for another shell; `init` against an emulator must export the same."""
DUMMY = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SETTINGS = {"MESSAGES_TABLE": "m-messages", "OUTBOX_TABLE": "m-outbox", "QUEUE_URL": "http://localhost:1/q"}
OPS_COMMANDS = [
    ["status", ISSUED_ID],
    ["stats"],
    ["relay", "--once", "--max-seconds", "5"],
    ["requeue", ISSUED_ID],
    ["skip", ISSUED_ID],
    ["clear-owed-ttl", "--dry-run"],
]
WITHOUT_LOCAL_EXTRA = (
    "import sys; sys.modules.update(dict.fromkeys(['moto', 'werkzeug', 'flask']));"
    "from outbox.cli import main; main()"
)
"""Runs `outbox` as if the local extra (moto[server]: moto, werkzeug, flask) were not installed."""
WITHOUT_LOCAL_CODE = WITHOUT_LOCAL_EXTRA.replace("'flask'", "'flask', 'outbox.local'")
"""... and as if `outbox.local` were absent too: an operations command must not even import it."""


def fresh_shell(home: Path, **variables: str) -> dict[str, str]:
    """A new user's environment: no AWS variables, no ~/.aws, no instance metadata, no outbox settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in {*SETTINGS, "COLUMNS", "LINES"}
    }
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(variables)
    return env


def outbox(*args: str, env: dict[str, str], code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "outbox.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The only stderr line of a command that must have failed with `exit_code` and no traceback."""
    shown = f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == exit_code, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1, shown
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- usage errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--port", "-5"], "--port"),
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--aws-port", "70000"], "--aws-port"),
        (["serve", "--relay-every", "nan"], "--relay-every"),
        (["skip"], "MESSAGE_ID"),
        (["status"], "MESSAGE_ID"),
        (["relay"], "--once"),
        (["relay", "--once", "--max-seconds", "nan"], "--max-seconds"),
        (["requeue"], "MESSAGE_ID"),
        (["stat"], "stats"),
        (["init", "--fifo=3"], "--fifo"),
        (["init", "--prefix", "a b"], "--prefix"),
        (["init", "--endpoint-url", "localhost:5000"], "--endpoint-url"),
        (["demo", "--fail-rate", "nan"], "--fail-rate"),
        (["demo", "--messages", "0"], "--messages"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    line = one_line_error(outbox(*args, env=fresh_shell(tmp_path)), 2)

    assert line.startswith("usage error: ")
    assert says.lower() in line.lower()
    assert "╭" not in line


# -- configuration errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", OPS_COMMANDS, ids=lambda args: args[0])
@pytest.mark.parametrize(
    ("missing", "names"),
    [
        ("region", "AWS_DEFAULT_REGION"),
        ("credentials", "AWS_ACCESS_KEY_ID"),
    ],
)
def test_no_region_or_credentials_is_a_configuration_error_naming_what_to_set(
    tmp_path: Path, args: list[str], missing: str, names: str
) -> None:
    given = (
        {"AWS_DEFAULT_REGION": "us-east-1"}
        if missing == "credentials"
        else {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    env = fresh_shell(tmp_path, **SETTINGS, **given, AWS_ENDPOINT_URL=f"http://localhost:{free_port()}")

    line = one_line_error(outbox(*args, env=env), 2)

    assert line.startswith(f"configuration error: no AWS {missing}")
    assert names in line


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"AWS_PROFILE": "nobody"}, "nobody"),
        ({**DUMMY, "AWS_DEFAULT_REGION": "us east"}, "us east"),
        ({**DUMMY, "AWS_ENDPOINT_URL": "localhost:4566"}, "AWS_ENDPOINT_URL"),
        ({**DUMMY, "OUTBOX_SHARDS": "many"}, "OUTBOX_SHARDS"),
    ],
)
def test_a_bad_aws_setting_is_a_configuration_error(
    tmp_path: Path, variables: dict[str, str], says: str
) -> None:
    line = one_line_error(outbox("stats", env=fresh_shell(tmp_path, **SETTINGS, **variables)), 2)

    assert line.startswith("configuration error: ")
    assert says in line


def test_init_against_aws_itself_never_invents_credentials(tmp_path: Path) -> None:
    real = "https://dynamodb.us-east-1.amazonaws.com"

    no_region = outbox("init", "--endpoint-url", real, env=fresh_shell(tmp_path))
    no_credentials = outbox(
        "init", "--endpoint-url", real, env=fresh_shell(tmp_path, AWS_DEFAULT_REGION="eu-west-1")
    )

    assert "AWS_DEFAULT_REGION" in one_line_error(no_region, 2)
    assert "AWS_ACCESS_KEY_ID" in one_line_error(no_credentials, 2)
    assert no_region.stdout == no_credentials.stdout == ""


# -- AWS unreachable -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [*OPS_COMMANDS, ["init"]], ids=lambda args: args[0])
def test_an_endpoint_that_refuses_connections_is_one_line_and_exit_1(tmp_path: Path, args: list[str]) -> None:
    endpoint = f"http://localhost:{free_port()}"
    env = fresh_shell(tmp_path, **SETTINGS, **DUMMY, AWS_ENDPOINT_URL=endpoint)

    line = one_line_error(outbox(*args, env=env), 1)

    assert endpoint in line


# -- relay --once --------------------------------------------------------------------------------------


def _server_env(home: Path, moto_server: EmbeddedAws, outbox_: Outbox, **variables: str) -> dict[str, str]:
    given = {**outbox_.resources.environment(), **DUMMY, "AWS_ENDPOINT_URL": moto_server.endpoint_url}
    return fresh_shell(home, **{**given, **variables})


def test_relay_once_when_every_shard_fails_exits_1_saying_why(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    env = _server_env(tmp_path, moto_server, server_outbox, OUTBOX_TABLE="no-such-table")

    result = outbox("relay", "--once", "--max-seconds", "10", env=env)

    line = one_line_error(result, 1)
    assert "8 of 8 shard(s) stopped on ResourceNotFoundException" in line
    assert "OUTBOX_TABLE=no-such-table" in line
    [summary] = [json.loads(row) for row in result.stdout.splitlines()]
    assert (summary["relay_errors"], summary["sent"]) == (8, 0)


def test_relay_once_when_every_send_fails_exits_1_naming_the_queue(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    ingest_messages(server_outbox, 3)
    wrong_queue = server_outbox.resources.queue_url + "-nope"
    env = _server_env(tmp_path, moto_server, server_outbox, QUEUE_URL=wrong_queue)

    result = outbox("relay", "--once", "--max-seconds", "10", env=env)

    line = one_line_error(result, 1)
    assert "3 send(s) to SQS failed" in line
    assert wrong_queue in line
    assert json.loads(result.stdout)["rolled_back"] == 3


def test_relay_once_that_works_exits_0_with_nothing_on_stderr(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    ingest_messages(server_outbox, 3)

    result = outbox("relay", "--once", env=_server_env(tmp_path, moto_server, server_outbox))

    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["sent"] == 3


def test_relay_once_waits_for_shards_another_relay_holds_and_sends_what_they_hold(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    """A full pass (ADR 0018): every shard is held by a relay that died 2 s into its lease; the command
    waits for the leases to run out rather than skipping the shards and reporting nothing to do."""
    ids = ingest_messages(server_outbox, 3)
    dead_holder = ShardLeases(
        dynamodb_client(), outbox_table=server_outbox.resources.outbox_table, lease_seconds=2
    )
    now_ms = int(time.time() * 1000)
    for shard in range(server_outbox.settings.outbox_shards):
        assert dead_holder.acquire(str(shard), holder="dead", now_ms=now_ms) is not None

    result = outbox("relay", "--once", env=_server_env(tmp_path, moto_server, server_outbox))

    assert (result.returncode, result.stderr) == (0, "")
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["shards_busy"], summary["drained"]) == (3, 0, True)
    received = {message_id_of(message) for message in receive_all(server_outbox.resources.queue_url)}
    assert received == set(ids)


# -- init in a fresh shell -----------------------------------------------------------------------------


def test_init_against_an_emulator_in_a_fresh_shell_exports_all_a_fresh_shell_needs(
    tmp_path: Path, moto_server: EmbeddedAws
) -> None:
    result = outbox(
        "init", "--endpoint-url", moto_server.endpoint_url, "--prefix", "fresh", env=fresh_shell(tmp_path)
    )

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert set(exports) == EMULATOR_EXPORTS
    assert exports["AWS_REGION"] == exports["AWS_DEFAULT_REGION"]
    # Another fresh shell with only those lines can use the outbox.
    again = fresh_shell(tmp_path, **exports)
    assert outbox("relay", "--once", env=again).returncode == 0
    stats = outbox("stats", "--json", env=again)
    assert (stats.returncode, json.loads(stats.stdout)["outbox_depth"]) == (0, 0)


def test_init_keeps_configured_credentials_to_itself(tmp_path: Path, moto_server: EmbeddedAws) -> None:
    env = fresh_shell(
        tmp_path, AWS_ACCESS_KEY_ID="mine", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION="eu-west-1"
    )

    result = outbox("init", "--endpoint-url", moto_server.endpoint_url, "--prefix", "own", env=env)

    assert result.returncode == 0, result.stderr
    assert "secret" not in result.stdout
    assert "AWS_ACCESS_KEY_ID" not in result.stdout
    assert "export AWS_DEFAULT_REGION=eu-west-1" in result.stdout.splitlines()


# -- machine output ------------------------------------------------------------------------------------


def test_relay_and_json_output_stay_one_object_per_line_in_40_columns(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    env = _server_env(tmp_path, moto_server, server_outbox, COLUMNS="40", OUTBOX_SHARDS="64")

    for args in (["relay", "--once"], ["stats", "--json"]):
        result = outbox(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1, result.stdout
        json.loads(result.stdout)


def test_serve_prints_one_relay_summary_per_line_in_40_columns(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "outbox.cli", "serve", "--port", str(port), "--relay-every", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fresh_shell(tmp_path, COLUMNS="40"),
    )
    lines: list[str] = []
    try:
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        request = urllib.request.Request(
            f"http://localhost:{port}/messages",
            data=b'{"payload": {"hello": "world"}}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            assert response.status == 202
        deadline = time.monotonic() + 60
        for line in server.stdout:
            lines.append(line)
            if line.startswith("relay: ") or time.monotonic() > deadline:
                break
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
    relay_lines = [line for line in lines if line.startswith("relay: ")]
    assert relay_lines, lines
    assert json.loads(relay_lines[0].removeprefix("relay: "))["sent"] == 1
    assert any(line.startswith("export QUEUE_URL=http://localhost:") for line in lines), lines
    starts = (
        "API ",
        "AWS endpoint ",
        "relay",
        "consumer",
        "For the AWS CLI",
        "export ",
        "Try: curl",
        "ready",
    )
    assert all(line.startswith(starts) for line in lines), lines  # nothing wrapped onto a line of its own


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = outbox("serve", "--port", str(port), env=fresh_shell(tmp_path))
        emulator = outbox(
            "serve", "--port", str(free_port()), "--aws-port", str(port), env=fresh_shell(tmp_path)
        )

    assert f"127.0.0.1:{port}" in one_line_error(api, 1)
    assert "--aws-port" in one_line_error(emulator, 1)


# -- the base install --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_demo_and_serve_without_the_local_tools_say_so_in_one_line(tmp_path: Path, command: str) -> None:
    result = outbox(command, env=fresh_shell(tmp_path), code=WITHOUT_LOCAL_EXTRA)

    line = one_line_error(result, 2)
    assert line == f"outbox {command} needs the local tools: pip install 'dynamodb-sqs-outbox[local]'"


def test_the_operations_commands_work_without_the_local_tools(
    tmp_path: Path, moto_server: EmbeddedAws, server_outbox: Outbox
) -> None:
    [message_id] = ingest_messages(server_outbox, 1)
    env = _server_env(tmp_path, moto_server, server_outbox)

    results = {
        "init": outbox(
            "init",
            "--endpoint-url",
            moto_server.endpoint_url,
            "--prefix",
            "base",
            env=env,
            code=WITHOUT_LOCAL_CODE,
        ),
        "relay": outbox("relay", "--once", env=env, code=WITHOUT_LOCAL_CODE),
        "status": outbox("status", message_id, "--json", env=env, code=WITHOUT_LOCAL_CODE),
        "stats": outbox("stats", "--json", env=env, code=WITHOUT_LOCAL_CODE),
        "clear-owed-ttl": outbox("clear-owed-ttl", "--dry-run", env=env, code=WITHOUT_LOCAL_CODE),
    }
    missing = outbox("requeue", ISSUED_ID, env=env, code=WITHOUT_LOCAL_CODE)

    assert {name: (r.returncode, r.stderr) for name, r in results.items()} == dict.fromkeys(results, (0, ""))
    assert json.loads(results["status"].stdout)["status"] == "QUEUED"
    assert one_line_error(missing, 1) == f"error: no such message: {ISSUED_ID}"


# -- help ----------------------------------------------------------------------------------------------


def test_every_command_has_an_example_and_the_top_level_help_the_exit_codes(tmp_path: Path) -> None:
    top = outbox("--help", env=fresh_shell(tmp_path))
    commands = [
        line.split()[0]
        for line in top.stdout.split("Commands:")[1].split("Exit codes:")[0].splitlines()
        if line.strip()
    ]

    assert top.returncode == 0
    assert len(commands) == 10, commands
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n    {code}" in top.stdout.split("Exit codes:")[1], top.stdout
    groups = {"dlq": ["list", "redrive"]}  # a group's help lists its commands; each has the example
    for command in [[name, *([sub] if sub else [])] for name in commands for sub in groups.get(name, [""])]:
        shown = outbox(*command, "--help", env=fresh_shell(tmp_path, COLUMNS="80"))
        assert shown.returncode == 0, shown.stderr
        assert "Example" in shown.stdout, command

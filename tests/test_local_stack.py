"""`outbox serve` as a user runs it, and the admin commands `status` and `stats`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import boto3
import pytest

from outbox.local.queue import drain_queue, message_id_of
from tests.conftest import run_outbox

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _serve(port: int, *options: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`outbox serve` started as a user starts it, read up to "ready"; its `export` lines."""
    server = subprocess.Popen(
        [sys.executable, "-m", "outbox.cli", "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    exports: dict[str, str] = {}
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("export "):
            name, value = line.removeprefix("export ").strip().split("=", 1)
            exports[name] = value
        if line.startswith("ready"):
            break
    return server, exports


def _stopped(server: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user stops it: exit 0, no traceback; what it printed after "ready"."""
    server.send_signal(signal.SIGINT)
    out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err
    return out


def test_serve_takes_a_message_through_to_completed_with_the_example_consumer() -> None:
    port = _free_port()
    server, exports = _serve(port)
    try:
        api = f"http://localhost:{port}"
        status, accepted = _http("POST", f"{api}/messages", {"payload": {"hello": "world"}})
        assert (status, accepted["status"]) == (202, "PENDING")
        record: dict[str, Any] = {}
        for _ in range(120):
            record = _http("GET", f"{api}/messages/{accepted['message_id']}")[1]
            if record["status"] == "COMPLETED":
                break
            time.sleep(0.25)
        assert record["status"] == "COMPLETED"
        assert record["queued_at"] <= record["processing_started_at"] <= record["completed_at"]
        assert record["receive_count"] == 1
        stats = run_outbox("stats", "--json", env={**os.environ, **exports})
        assert json.loads(stats.stdout)["statuses"] == {"COMPLETED": 1}
    finally:
        out = _stopped(server)
    assert 'consumer: {"received": 1, "failed": 0}' in out


def test_serve_accepts_relays_and_stops_cleanly() -> None:
    port = _free_port()
    # A sweep ten minutes away: the message below can only be relayed by the doorbell. No consumer: the
    # queue is read here.
    server, exports = _serve(port, "--relay-every", "600", "--no-consumer")
    try:
        api = f"http://localhost:{port}"

        status, accepted = _http("POST", f"{api}/messages", {"payload": {"hello": "world"}})
        assert (status, accepted["status"]) == (202, "PENDING")
        assert _http("POST", f"{api}/messages", {"nope": 1})[0] == 400
        record: dict[str, Any] = {}
        for _ in range(60):
            record = _http("GET", f"{api}/messages/{accepted['message_id']}")[1]
            if record["status"] == "QUEUED":
                break
            time.sleep(0.25)
        assert record["status"] == "QUEUED"

        sqs = boto3.client(
            "sqs",
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        received = drain_queue(sqs, exports["QUEUE_URL"])
        assert [message_id_of(m) for m in received] == [accepted["message_id"]]
        assert json.loads(received[0]["Body"]) == {"hello": "world"}

        env = {**os.environ, **exports}
        stats = run_outbox("stats", "--json", env=env)
        assert stats.returncode == 0, stats.stderr
        figures = json.loads(stats.stdout)
        assert (figures["statuses"], figures["outbox_depth"], figures["parked"]) == ({"QUEUED": 1}, 0, 0)
        shown = run_outbox("status", accepted["message_id"], "--json", "--payload", env=env)
        assert json.loads(shown.stdout)["payload"] == {"hello": "world"}
        missing = run_outbox("status", "nope", env=env)
        assert (missing.returncode, missing.stderr.strip()) == (1, "error: no such message: nope")
    finally:
        out = _stopped(server)
    assert '"trigger": "doorbell"' in out
    assert "consumer:" not in out

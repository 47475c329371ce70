"""Operator actions: requeue and skip, as library calls and as `outbox` commands over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import EntryState, Status
from outbox.core.errors import MessageNotFound
from outbox.local.emulator import EmbeddedAws
from outbox.local.queue import message_id_of
from outbox.ops import admin
from outbox.testing.faults import FaultInjector, FaultKind
from tests.conftest import Outbox, ingest_messages, make_relay, receive_all, run_outbox, run_relay

pytestmark = pytest.mark.server


def _poison(outbox: Outbox, count: int = 1, **ingest: object) -> list[str]:
    ids = ingest_messages(outbox, count, **ingest)  # type: ignore[arg-type]
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None)
    run_relay(make_relay(outbox))
    faults.remove()
    assert all(outbox.message(mid)["status"] == {"S": Status.FAILED} for mid in ids)  # type: ignore[index]
    return ids


def test_requeue_refuses_what_is_not_failed(server_outbox: Outbox) -> None:
    (pending,) = ingest_messages(server_outbox, 1)
    with pytest.raises(admin.NotFailed, match="PENDING"):
        admin.requeue(pending, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="t")
    for unknown in ("nope", "x" * 3000):  # a key over 2,048 bytes: not found, not a ValidationException
        with pytest.raises(MessageNotFound):
            admin.requeue(unknown, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="t")
        with pytest.raises(MessageNotFound):
            admin.skip(unknown, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="t")
    assert server_outbox.message(pending)["status"] == {"S": Status.PENDING}  # type: ignore[index]


def test_skip_releases_a_fifo_group_and_requeue_after_skip_writes_a_new_entry(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    (stuck,) = _poison(fifo, 1, group=lambda n: "g")
    (behind,) = ingest_messages(fifo, 1, group=lambda n: "g")
    assert run_relay(make_relay(fifo)).sent == 0  # the parked entry holds its group

    admin.skip(stuck, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")
    message = fifo.message(stuck)
    assert message is not None
    assert message["status"] == {"S": Status.FAILED}
    assert message["skipped_by"] == {"S": "ops"}
    assert run_relay(make_relay(fifo)).sent == 1
    assert [message_id_of(m) for m in receive_all(fifo.resources.queue_url)] == [behind]

    result = admin.requeue(stuck, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")
    assert not result.reused_entry
    entries = fifo.entries()
    assert [(e["message_id"]["S"], e["state"]["S"]) for e in entries] == [(stuck, EntryState.READY)]
    assert run_relay(make_relay(fifo)).sent == 1
    assert fifo.message(stuck)["status"] == {"S": Status.QUEUED}  # type: ignore[index]


def test_cli_requeue_all_failed_and_status_as_json(moto_server: EmbeddedAws, server_outbox: Outbox) -> None:
    ids = _poison(server_outbox, 3)
    env = {
        **os.environ,
        **server_outbox.resources.environment(),
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
    }

    result = run_outbox("requeue", "--all-failed", "--json", env=env)

    assert result.returncode == 0, result.stderr
    assert sorted(row["message_id"] for row in json.loads(result.stdout)) == sorted(ids)
    assert all(server_outbox.message(mid)["status"] == {"S": Status.PENDING} for mid in ids)  # type: ignore[index]
    again = subprocess.run(
        [sys.executable, "-m", "outbox.cli", "requeue", ids[0]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: message {ids[0]} is PENDING, not FAILED"

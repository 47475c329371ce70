"""TTL never deletes a message the relay still owes (issue #12, item 2).

moto never expires items, so `outbox.testing.ttl.sweep_expired` applies DynamoDB's documented TTL rule at
a moment the test picks: weeks past the retention, a real table would have deleted these items.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.domain import EntryState, Status
from outbox.local.queue import message_id_of
from outbox.ops import admin
from outbox.testing.faults import FaultInjector, FaultKind
from outbox.testing.ttl import sweep_expired
from tests.conftest import FakeClock, Outbox, ingest_messages, make_relay, receive_all, run_outbox, run_relay

pytestmark = pytest.mark.server


def _long_after_retention(outbox: Outbox) -> datetime:
    return datetime.now(UTC) + timedelta(days=outbox.settings.retention_days + 30)


def _poison(outbox: Outbox, ids: list[str]) -> None:
    faults = FaultInjector(sqs_client()).add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None)
    run_relay(make_relay(outbox))
    faults.remove()
    assert all(outbox.message(mid)["status"] == {"S": Status.FAILED} for mid in ids)  # type: ignore[index]


def _expires_at(outbox: Outbox, message_id: str) -> int | None:
    item = outbox.message(message_id)
    assert item is not None
    return int(item["expires_at"]["N"]) if "expires_at" in item else None


def test_only_a_message_nothing_is_owed_for_carries_a_ttl(server_outbox: Outbox) -> None:
    (queued,) = ingest_messages(server_outbox, 1)
    run_relay(make_relay(server_outbox))
    (failed,) = ingest_messages(server_outbox, 1)
    assert _expires_at(server_outbox, failed) is None  # PENDING: owed
    _poison(server_outbox, [failed])

    assert server_outbox.message(failed)["status"] == {"S": Status.FAILED}  # type: ignore[index]
    assert _expires_at(server_outbox, failed) is None  # FAILED with its entry parked: still owed
    expires = _expires_at(server_outbox, queued)  # QUEUED: retention starts at the queueing
    retention = server_outbox.settings.retention_days * 86400
    assert expires is not None
    assert abs(expires - (datetime.now(UTC).timestamp() + retention)) < 60

    admin.skip(failed, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="ops")
    assert _expires_at(server_outbox, failed) is not None  # skipped: nothing owed any more
    admin.requeue(failed, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="ops")
    assert _expires_at(server_outbox, failed) is None  # owed again


def test_weeks_past_the_retention_nothing_owed_is_deleted_and_the_relay_still_delivers_it(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    (other,) = ingest_messages(fifo, 1, group=lambda n: "h")
    run_relay(make_relay(fifo))
    head, behind = ingest_messages(fifo, 2, group=lambda n: "g")
    _poison(fifo, [head])  # the head of g is poisoned, `behind` waits behind it
    assert fifo.message(head)["status"] == {"S": Status.FAILED}  # type: ignore[index]
    assert fifo.message(behind)["status"] == {"S": Status.PENDING}  # type: ignore[index]

    swept = sweep_expired(dynamodb_client(), fifo.resources.messages_table, now=_long_after_retention(fifo))

    assert [item["message_id"] for item in swept] == [{"S": other}]  # only the QUEUED one
    admin.requeue(head, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")
    assert run_relay(make_relay(fifo)).sent == 2
    assert [message_id_of(m) for m in receive_all(fifo.resources.queue_url)] == [other, head, behind]


def test_a_parked_entry_whose_message_is_gone_is_shown_and_skipped_so_its_group_moves_on(
    new_server_outbox: Callable[..., Outbox],
) -> None:
    fifo = new_server_outbox(fifo=True)
    head, behind = ingest_messages(fifo, 2, group=lambda n: "g")
    faults = FaultInjector(sqs_client()).add(
        "SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None, when=head
    )
    run_relay(make_relay(fifo))
    faults.remove()
    # As a TTL set before 0.2 (or a hand-made delete) would leave it: the entry, parked, and no message.
    dynamodb_client().delete_item(TableName=fifo.resources.messages_table, Key={"message_id": {"S": head}})
    assert run_relay(make_relay(fifo)).sent == 0  # the parked entry holds its group

    stats = admin.stats(dynamodb_client(), fifo.settings).as_dict()
    assert (stats["parked"], stats["parked_without_message_ids"]) == (1, [head])
    with pytest.raises(admin.MessageGone, match=f"outbox skip {head}"):
        admin.requeue(head, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")

    result = admin.skip(head, dynamodb=dynamodb_client(), settings=fifo.settings, actor="ops")

    assert result.orphaned
    assert [e["message_id"]["S"] for e in fifo.entries()] == [behind]
    assert run_relay(make_relay(fifo)).sent == 1
    assert [message_id_of(m) for m in receive_all(fifo.resources.queue_url)] == [behind]
    assert admin.stats(dynamodb_client(), fifo.settings).as_dict()["parked_without_message"] == 0


def test_clear_owed_ttl_removes_the_ttl_that_older_versions_gave_owed_messages(
    server_outbox: Outbox, moto_server: object
) -> None:
    pending, failed, skipped, queued = ingest_messages(server_outbox, 4)
    faults = FaultInjector(sqs_client())
    for mid in (failed, skipped):
        faults.add("SendMessageBatch", FaultKind.ENTRY_REJECTED, times=None, when=mid)
    faults.add("SendMessageBatch", FaultKind.ENTRY_FAILURE, times=None, when=pending)
    run_relay(make_relay(server_outbox))
    faults.remove()
    admin.skip(skipped, dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="ops")
    legacy = str(int(datetime.now(UTC).timestamp()) + 86400)
    for mid in (pending, failed):  # what ingest wrote before 0.2
        dynamodb_client().update_item(
            TableName=server_outbox.resources.messages_table,
            Key={"message_id": {"S": mid}},
            UpdateExpression="SET expires_at = :t",
            ExpressionAttributeValues={":t": {"N": legacy}},
        )
    kept = {mid: _expires_at(server_outbox, mid) for mid in (skipped, queued)}
    env = {**server_outbox.resources.environment(), "AWS_ENDPOINT_URL": moto_server.endpoint_url}  # type: ignore[attr-defined]

    dry = run_outbox("clear-owed-ttl", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert '"owed_with_ttl": 2' in dry.stdout
    assert _expires_at(server_outbox, pending) is not None
    done = run_outbox("clear-owed-ttl", "--json", env=env)

    assert done.returncode == 0, done.stderr
    assert '"cleared": 2' in done.stdout
    assert (_expires_at(server_outbox, pending), _expires_at(server_outbox, failed)) == (None, None)
    assert {mid: _expires_at(server_outbox, mid) for mid in (skipped, queued)} == kept
    again = admin.clear_owed_ttl(dynamodb_client(), server_outbox.settings)
    assert (again.checked, again.cleared) == (0, 0)


def test_requeue_all_failed_leaves_alone_what_moved_on_and_goes_on(
    server_outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ingest_messages(server_outbox, 3)
    _poison(server_outbox, ids)
    # The failed index still lists ids[0] after a requeue elsewhere (eventually consistent): simulate it.
    admin.requeue(ids[0], dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="other")
    listed = [ids[0], *admin.failed_message_ids(dynamodb_client(), server_outbox.settings)]
    monkeypatch.setattr(admin, "failed_message_ids", lambda *_: iter(listed))

    outcome = admin.requeue_all_failed(dynamodb=dynamodb_client(), settings=server_outbox.settings, actor="t")

    assert sorted(r.message_id for r in outcome.requeued) == sorted(ids[1:])
    assert list(outcome.skipped) == [ids[0]]
    assert "PENDING" in outcome.skipped[ids[0]]
    statuses = [server_outbox.message(mid)["status"]["S"] for mid in ids]  # type: ignore[index]
    assert statuses == [Status.PENDING] * 3
    assert all(e["state"]["S"] == EntryState.READY for e in server_outbox.entries())
    clock = FakeClock()
    assert run_relay(make_relay(server_outbox, clock)).sent == 3

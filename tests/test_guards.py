"""Every guard the guarantees rest on, each pinned by a scenario that fails without it (issue 18).

A guard is a condition on a write (`ConditionExpression`), a token compare, or a check in code that keeps
a write from happening. Each test here builds one interleaving deterministically: relays are driven
through the store's public API under shard leases of their own (a "stale" relay is one whose lease ran out
and was taken over by another relay, ADR 0018), operators' reads and writes are split by a hook on
their own client, and the outcome is read from the tables and the queue directly.

The inventory (which guard, what it protects against, which test pins it) is in ADR 0013; `./dev mutants`
(`chaos/mutants.py`) removes each guard in turn and runs the tests named for it here: none may survive.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from outbox import enqueue, outbox_write
from outbox.core.clients import CLIENT_CONFIG, dynamodb_client, sqs_client
from outbox.core.domain import EntryState, Status, epoch_millis, utc_now
from outbox.local.queue import message_id_of
from outbox.ops import admin
from relay.entries import Entry, RunSummary
from relay.leases import LeaseLost, ShardLease, ShardLeases
from relay.store import FinalizeResult, OutboxStore
from tests.conftest import (
    FakeClock,
    Outbox,
    call_ingest,
    ingest_messages,
    make_relay,
    one_shard,
    receive_all,
    run_relay,
    shard_leases,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

Tables = tuple[list[dict[str, Any]], list[dict[str, Any]]]


# -- the cast: relays with their own leases, operators with their own clients ---------------------------


@dataclass
class RelayHand:
    """One relay as the store and the shard leases see it: its lease on a shard, and the calls it makes
    under it. A "stale" relay is one whose lease ran out and was taken over by another."""

    store: OutboxStore
    leases: ShardLeases
    lease: ShardLease | None = None

    def acquire(self, shard: str, at_ms: int) -> bool:
        self.lease = self.leases.acquire(shard, holder=str(uuid.uuid4()), now_ms=at_ms)
        return self.lease is not None

    def renew(self, sending_upto: str, at_ms: int) -> None:
        assert self.lease is not None
        self.lease = self.leases.renew(self.lease, now_ms=at_ms, sending_upto=sending_upto)

    def check(self) -> TransactWriteItemTypeDef:
        assert self.lease is not None
        return self.leases.check_action(self.lease)

    def finalize(self, entry: Entry, sqs_message_id: str) -> FinalizeResult:
        return self.store.finalize([(entry, sqs_message_id)], check=self.check(), now=utc_now())

    def delete_entries(self, *entries: Entry) -> None:
        """What a relay does with entries whose message moved on or is gone (`LeaseLost` if not ours)."""
        self.store.delete_entries(entries, check=self.check())

    def roll_back(self, entry: Entry, *, next_attempt_at_ms: int) -> bool:
        """A counted failure: the entry waits until `next_attempt_at_ms`."""
        return self.store.roll_back(
            entry,
            check=self.check(),
            counted=True,
            next_attempt_at_ms=next_attempt_at_ms,
            error="test failure",
            sent_at_ms=None,
        )

    def poison(self, entry: Entry) -> bool:
        """Rejected for good: message FAILED, entry PARKED."""
        return self.store.poison(
            entry,
            check=self.check(),
            attempts=entry.attempts + 1,
            error="rejected for good",
            now=utc_now(),
            sent_at_ms=None,
        )

    def release(self) -> bool:
        assert self.lease is not None
        return self.leases.release(self.lease)


@dataclass
class Scene:
    outbox: Outbox
    t0: int
    """Epoch milliseconds after every message of the scene was accepted: the first acquire's moment."""

    @property
    def lease_ms(self) -> int:
        return self.outbox.settings.lease_seconds * 1000

    @property
    def after_lease(self) -> int:
        """A moment past a lease taken (or renewed) at `t0`."""
        return self.t0 + self.lease_ms + 1000

    def relay(self) -> RelayHand:
        return RelayHand(make_relay(self.outbox).store, shard_leases(self.outbox))

    def holder(self, entry: Entry, at_ms: int | None = None) -> RelayHand:
        """A relay holding the lease of the entry's shard (taken at `at_ms`, `t0` by default)."""
        hand = self.relay()
        assert hand.acquire(entry.shard, self.t0 if at_ms is None else at_ms)
        return hand

    def taken_over(self, entry: Entry) -> tuple[RelayHand, RelayHand]:
        """A relay A that held the entry's shard and stalled (its batch renewed and sent), and relay B that
        took the shard over once A's lease ran out: (A, B)."""
        a = self.holder(entry)
        a.renew(entry.entry_id, self.t0)
        return a, self.holder(entry, self.after_lease)

    def entry(self, message_id: str) -> Entry:
        item = next((e for e in self.outbox.entries() if e["message_id"]["S"] == message_id), None)
        assert item is not None, f"no entry for {message_id}"
        return Entry.from_item(item)

    def tables(self) -> Tables:
        """Both tables, whole (leases included), in a stable order: "nothing changed" is an equality of
        two of these."""

        def order(item: dict[str, Any]) -> str:
            return json.dumps(item, sort_keys=True)

        entries = [*self.outbox.entries(), *self.outbox.leases().values()]
        return sorted(self.outbox.messages(), key=order), sorted(entries, key=order)

    def send_copy(self, message_id: str) -> str:
        """Send a message to the queue as a relay does (body, `message_id` attribute); its SQS id."""
        item = self.outbox.message(message_id)
        assert item is not None
        response = sqs_client().send_message(
            QueueUrl=self.outbox.resources.queue_url,
            MessageBody=item["payload"]["S"],
            MessageAttributes={"message_id": {"DataType": "String", "StringValue": message_id}},
        )
        return response["MessageId"]

    def received(self) -> list[str]:
        return [message_id_of(message) for message in receive_all(self.outbox.resources.queue_url)]

    def status(self, message_id: str) -> str | None:
        item = self.outbox.message(message_id)
        return None if item is None else str(item["status"]["S"])

    def set_status(self, message_id: str, status: Status) -> None:
        """A writer outside the relay (a consumer, a script) moves the message."""
        dynamodb_client().update_item(
            TableName=self.outbox.resources.messages_table,
            Key={"message_id": {"S": message_id}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )

    def failed_message(self) -> tuple[str, Entry]:
        """A message poisoned by a relay under its shard's lease (then released): FAILED, entry PARKED."""
        (message_id,) = ingest_messages(self.outbox, 1)
        entry = self.entry(message_id)
        poisoner = self.holder(entry)
        assert poisoner.poison(entry)
        assert poisoner.release()
        assert self.status(message_id) == Status.FAILED
        return message_id, self.entry(message_id)

    def settled_relay_run(self) -> RunSummary:
        """A relay run whose clock is past every lease and backoff of the scene."""
        clock = FakeClock()
        clock.advance(3 * self.outbox.settings.lease_seconds + self.outbox.settings.max_backoff_seconds)
        return run_relay(make_relay(self.outbox, clock))


@pytest.fixture
def scene(outbox: Outbox) -> Scene:
    return Scene(outbox, epoch_millis(utc_now()) + 1000)


def operator_client(meanwhile: Callable[[], None], *, before: str = "TransactWriteItems") -> DynamoDBClient:
    """An operator's own DynamoDB client: its reads go through, then `meanwhile` runs (someone else acts)
    just before its first `before` call (its transaction, by default) is sent."""
    client = cast(
        "DynamoDBClient", botocore.session.get_session().create_client("dynamodb", config=CLIENT_CONFIG)
    )
    pending = [meanwhile]

    def before_the_write(**_: object) -> None:
        while pending:
            pending.pop()()

    client.meta.events.register(f"before-call.dynamodb.{before}", before_the_write)
    return client


def once_after(client: Any, event: str, action: Callable[[], None]) -> None:
    """Run `action` once, right after the next `event` call of `client` returned."""
    pending = [action]

    def after(**_: object) -> None:
        while pending:
            pending.pop()()

    client.meta.events.register(event, after)


def requeue(
    scene: Scene, message_id: str, *, client: DynamoDBClient | None = None, actor: str = "ops"
) -> None:
    admin.requeue(
        message_id, dynamodb=client or dynamodb_client(), settings=scene.outbox.settings, actor=actor
    )


def skip(scene: Scene, message_id: str, *, client: DynamoDBClient | None = None, actor: str = "ops") -> None:
    admin.skip(message_id, dynamodb=client or dynamodb_client(), settings=scene.outbox.settings, actor=actor)


# -- the shard's lease in the relay (ADR 0018) ------------------------------------------------------------


def test_a_finalize_after_the_lease_was_taken_over_is_refused_and_the_next_holder_resends(
    scene: Scene,
) -> None:
    """(a) Relay A sends, then stalls until its lease ran out; relay B takes the shard over, sees A's
    watermark, resends with the same message_id and counts the duplicate. A's finalize is refused by the
    lease's check (A stops the shard and leaves the lease alone). Nothing is lost."""
    outbox = one_shard(scene.outbox)
    ids = ingest_messages(outbox, 3)
    clock_a, clock_b = FakeClock(), FakeClock()
    clock_b.advance(outbox.settings.lease_seconds + 1)  # B runs once A's lease has run out
    by_b: list[RunSummary] = []
    once_after(
        sqs_client(),
        "after-call.sqs.SendMessageBatch",
        lambda: by_b.append(run_relay(make_relay(outbox, clock_b))),
    )

    by_a = run_relay(make_relay(outbox, clock_a))

    (b,) = by_b
    assert (b.sent, b.duplicates_possible, b.leases_lost) == (3, 3, 0)
    assert (by_a.sent, by_a.finalize_failed, by_a.leases_lost, by_a.drained) == (0, 3, 1, False)
    assert sorted(scene.received()) == sorted(ids + ids)  # A's copies and B's, with the same message ids
    assert all(scene.status(message_id) == Status.QUEUED for message_id in ids)
    assert outbox.entries() == []
    assert "released" in outbox.leases()["0"]  # B's release; A left it alone


def test_a_stale_finalize_after_another_relay_poisoned_changes_nothing(scene: Scene) -> None:
    """A finalize racing a poison: A sent and stalled past its lease, B took the shard and poisoned the
    message. A's finalize, and the entry delete a relay makes for a message that moved on, must leave the
    message FAILED and its entry PARKED (the operator decides: requeue or skip)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.taken_over(entry)
    sent_by_a = scene.send_copy(message_id)
    assert b.poison(entry)
    before = scene.tables()

    result = a.finalize(entry, sent_by_a)
    with pytest.raises(LeaseLost):
        a.delete_entries(entry)

    assert (result.done, result.lease_lost) == ([], True)
    assert scene.tables() == before
    assert scene.status(message_id) == Status.FAILED
    assert scene.entry(message_id).state == EntryState.PARKED


def test_a_stale_finalize_after_a_requeue_changes_nothing(scene: Scene) -> None:
    """A finalize racing a poison and a requeue: the message is PENDING again, its entry READY. A's late
    finalize (its lease taken over) must not take the requeue (mark QUEUED, delete the entry); the next
    relay run sends the message as the operator asked."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.taken_over(entry)
    sent_by_a = scene.send_copy(message_id)
    assert b.poison(entry)
    assert b.release()
    requeue(scene, message_id)
    before = scene.tables()

    result = a.finalize(entry, sent_by_a)

    assert (result.done, result.lease_lost) == ([], True)
    assert scene.tables() == before
    scene.settled_relay_run()
    assert scene.status(message_id) == Status.QUEUED
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id, message_id]  # A's copy, and the requeued send


def test_a_relay_whose_lease_was_taken_over_sends_nothing_more(scene: Scene) -> None:
    """(c) Relay A finalized its first batch; before its second, its lease ran out and relay B took the
    shard. A's renew is refused: A stops the shard and sends nothing of the second batch."""
    outbox = one_shard(scene.outbox)
    first, second = ingest_messages(outbox, 2)
    taker = scene.relay()

    def b_takes_the_shard() -> None:
        assert taker.acquire("0", epoch_millis(utc_now()) + scene.lease_ms + 5000)

    once_after(dynamodb_client(), "after-call.dynamodb.TransactWriteItems", b_takes_the_shard)

    summary = run_relay(make_relay(outbox, batch_size=1))

    assert (summary.sent, summary.leases_lost, summary.drained) == (1, 1, False)
    assert scene.received() == [first]
    assert [item["message_id"]["S"] for item in outbox.entries()] == [second]
    assert scene.status(second) == Status.PENDING
    lease = outbox.leases()["0"]
    assert taker.lease is not None
    assert lease["holder"]["S"] == taker.lease.holder
    assert "released" not in lease  # B's lease, untouched by A


def test_an_entry_written_while_another_relay_holds_the_shard_leaves_in_the_holders_invocation(
    scene: Scene,
) -> None:
    """(b) No lost wake-up: while relay A sends, a message is accepted and its doorbell's run finds the
    shard's lease held (refused: it skips the shard). A, after releasing the lease, reads the shard once
    more, finds the new entry and takes it in the same invocation."""
    outbox = one_shard(scene.outbox)
    (early,) = ingest_messages(outbox, 1)
    rung: list[tuple[str, RunSummary]] = []

    def accepted_and_rung() -> None:
        (late,) = ingest_messages(outbox, 1)
        rung.append((late, make_relay(outbox).run(time.monotonic() + 30, shards={"0"})))

    once_after(sqs_client(), "after-call.sqs.SendMessageBatch", accepted_and_rung)

    summary = run_relay(make_relay(outbox))

    ((late, doorbell),) = rung
    assert (doorbell.sent, doorbell.shards_busy, doorbell.drained) == (0, 1, True)
    assert (summary.sent, summary.drained) == (2, True)
    assert scene.received() == [early, late]
    assert outbox.entries() == []
    assert scene.status(late) == Status.QUEUED


@pytest.mark.server
def test_two_relays_on_the_same_shards_at_once_deliver_every_message_once(server_outbox: Outbox) -> None:
    """(d) A sweep and a doorbell run (two relays, several shard workers each) over the same shards at the
    same time: the leases keep them apart, so every message is delivered exactly once, nothing counted as a
    possible duplicate, and every lease is released."""
    ids = ingest_messages(server_outbox, 60)
    relays = [make_relay(server_outbox, batch_size=5, parallel_shards=4) for _ in range(2)]
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=2) as pool:
        summaries = list(pool.map(lambda relay: relay.run(deadline), relays))

    assert sum(summary.sent for summary in summaries) == 60
    assert sum(summary.duplicates_possible + summary.finalize_failed for summary in summaries) == 0
    received = [message_id_of(m) for m in receive_all(server_outbox.resources.queue_url)]
    assert sorted(received) == sorted(ids)
    assert server_outbox.entries() == []
    assert all("released" in lease for lease in server_outbox.leases().values())


def test_a_rollback_or_poison_by_a_relay_that_lost_its_lease_writes_nothing(scene: Scene) -> None:
    """(e) A's send failed (or was refused) after its lease ran out and B took the shard over. A's
    rollback and poison must write nothing: B may be sending the entry (a rollback would put it in
    backoff, a poison would mark a message FAILED that B delivers)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, _ = scene.taken_over(entry)
    before = scene.tables()

    with pytest.raises(LeaseLost):
        a.roll_back(entry, next_attempt_at_ms=scene.after_lease + 10_000)
    with pytest.raises(LeaseLost):
        a.poison(entry)

    assert scene.tables() == before
    assert scene.status(message_id) == Status.PENDING


def test_a_rollback_or_poison_after_an_older_relay_finalized_creates_no_entry(scene: Scene) -> None:
    """A rollback and a park are updates: on an entry deleted meanwhile (a relay of the version before
    shard leases finishing its claim during a deploy finalized the message) they must not create a half
    entry (no message id) that breaks every later read of the shard, nor fail the QUEUED message."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    holder = scene.holder(entry)
    older = scene.relay()
    older.lease = holder.lease  # the finalize of an older relay: no lease of its own to check
    assert older.finalize(entry, scene.send_copy(message_id)).done == [entry]
    before = scene.tables()

    rolled_back = holder.roll_back(entry, next_attempt_at_ms=scene.after_lease)
    poisoned = holder.poison(entry)

    assert (rolled_back, poisoned) == (False, False)
    assert scene.tables() == before
    assert scene.outbox.entries() == []
    assert scene.status(message_id) == Status.QUEUED


def test_a_poison_of_an_entry_removed_by_hand_writes_nothing(scene: Scene) -> None:
    """The entry of a PENDING message was deleted by hand while its send failed for good: the poison must
    not create a half parked entry (no message id) nor mark the message FAILED for an entry that is not
    there (`requeue` and `skip` could not find it)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    holder = scene.holder(entry)
    dynamodb_client().delete_item(TableName=scene.outbox.resources.outbox_table, Key=entry.key)
    before = scene.tables()

    assert not holder.poison(entry)

    assert scene.tables() == before
    assert scene.status(message_id) == Status.PENDING


# -- finalize ---------------------------------------------------------------------------------------------


def test_a_message_moved_on_during_the_send_is_not_flipped_back(scene: Scene) -> None:
    """Someone outside the relay (a consumer, a script) moves the message while the relay sends it. The
    finalize must not write QUEUED over it (no status moves backwards); the relay only drops the entry."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    once_after(
        sqs_client(),
        "after-call.sqs.SendMessageBatch",
        lambda: scene.set_status(message_id, Status.PROCESSING),
    )

    summary = run_relay(make_relay(scene.outbox))

    assert summary.sent == 1
    assert scene.status(message_id) == Status.PROCESSING
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id]


def test_an_entry_whose_message_moved_on_before_the_load_is_dropped_unsent(scene: Scene) -> None:
    """The message moves on between the lease's renew and the payload read: the relay must not send it."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    once_after(
        dynamodb_client(),
        "after-call.dynamodb.Query",
        lambda: scene.set_status(message_id, Status.COMPLETED),
    )

    summary = run_relay(make_relay(scene.outbox))

    assert (summary.sent, summary.stale) == (0, 1)
    assert scene.status(message_id) == Status.COMPLETED
    assert scene.outbox.entries() == []
    assert scene.received() == []


class SteppedClock(FakeClock):
    """A relay's clock that a test stalls: wall-clock and monotonic time jump together."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.stalled

    def stall(self, seconds: float) -> None:
        self.stalled += seconds
        self.advance(seconds)


def test_a_relay_stalled_past_its_lease_before_the_send_sends_nothing(scene: Scene) -> None:
    """The relay stalls between its lease's renew and its send until the lease has run out: another relay
    may hold the shard now. No send may start; the entry is left as it was and the next run sends it
    once."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    clock = SteppedClock()
    lease = scene.outbox.settings.lease_seconds
    once_after(dynamodb_client(), "after-call.dynamodb.BatchGetItem", lambda: clock.stall(lease))

    summary = make_relay(scene.outbox, clock).run(clock.monotonic() + 3600)

    assert summary.sent == 0
    assert scene.received() == []
    assert scene.status(message_id) == Status.PENDING
    assert (scene.entry(message_id).attempts, scene.entry(message_id).first_send_at) == (0, None)
    scene.settled_relay_run()
    assert scene.received() == [message_id]


def test_a_send_retry_never_starts_past_the_lease(scene: Scene) -> None:
    """The first send call fails as a whole (the connection drops) and takes until past the lease. The
    retry must not go out: the entry comes back as a possible send, for a later run under a lease of its
    own."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    clock = SteppedClock()
    lease = scene.outbox.settings.lease_seconds
    calls = []

    def drop_the_first_call(**_: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            clock.stall(lease)
            raise EndpointConnectionError(endpoint_url=scene.outbox.resources.queue_url)

    sqs_client().meta.events.register("before-call.sqs.SendMessageBatch", drop_the_first_call)

    summary = make_relay(scene.outbox, clock).run(clock.monotonic() + 3600)

    assert (summary.sent, len(calls)) == (0, 1)
    assert scene.received() == []
    assert scene.entry(message_id).first_send_at is not None  # it may have reached SQS
    scene.settled_relay_run()
    assert scene.received() == [message_id]


# -- poison -----------------------------------------------------------------------------------------------


def test_a_poison_never_fails_a_message_moved_on_by_someone_else(scene: Scene) -> None:
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    relay = scene.holder(entry)
    scene.set_status(message_id, Status.PROCESSING)
    before = scene.tables()

    assert not relay.poison(entry)

    assert scene.tables() == before


# -- ingest -----------------------------------------------------------------------------------------------


def test_a_replay_after_delivery_changes_nothing_and_adds_no_entry(scene: Scene) -> None:
    """The same request again, after the relay delivered the first: a replay, answered from the stored
    message. Writing it again would make a QUEUED message PENDING with a new entry: a second send."""
    first = enqueue({"n": 1}, settings=scene.outbox.settings, idempotency_key="order-1")
    run_relay(make_relay(scene.outbox))
    before = scene.tables()

    again = enqueue({"n": 1}, settings=scene.outbox.settings, idempotency_key="order-1")

    assert (again.message_id, again.status, again.replayed) == (first.message_id, Status.QUEUED, True)
    assert scene.tables() == before
    run_relay(make_relay(scene.outbox))
    assert scene.received() == [first.message_id]


def test_a_replay_with_a_changed_body_is_a_409_and_changes_nothing(scene: Scene) -> None:
    headers = {"Idempotency-Key": "order-2"}
    status, accepted, _ = call_ingest("POST", "/messages", {"payload": {"total": 10}}, headers=headers)
    assert status == 202
    run_relay(make_relay(scene.outbox))
    before = scene.tables()

    status, body, _ = call_ingest("POST", "/messages", {"payload": {"total": 99}}, headers=headers)

    assert status == 409
    assert body["error"]["code"] == "idempotency_key_reused"
    assert scene.tables() == before
    run_relay(make_relay(scene.outbox))
    received = receive_all(scene.outbox.resources.queue_url)
    assert [(message_id_of(m), json.loads(m["Body"])) for m in received] == [
        (accepted["message_id"], {"total": 10})
    ]


def test_an_entry_id_collision_writes_nothing(scene: Scene) -> None:
    """Two messages whose entries would land on the same key (the same shard and entry id): the second
    write is refused whole. Overwriting the entry would leave the first message PENDING with no entry:
    never sent, and nothing would say so."""
    settings = scene.outbox.settings
    first = outbox_write({"n": 1}, settings=settings)
    second = outbox_write({"n": 2}, settings=settings)
    first_entry, second_entry = first.items[1]["Put"]["Item"], second.items[1]["Put"]["Item"]
    second_message = second.items[0]["Put"]["Item"]
    for name in ("shard", "entry_id"):
        second_entry[name] = second_message[name] = first_entry[name]  # type: ignore[index]
    dynamodb_client().transact_write_items(TransactItems=first.items)
    before = scene.tables()

    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb_client().transact_write_items(TransactItems=second.items)

    assert scene.tables() == before
    run_relay(make_relay(scene.outbox))
    assert scene.received() == [first.message_id]


# -- clearing the TTL older versions gave owed messages (outbox/ops/admin.py `clear_owed_ttl`) --------------


def _legacy_ttl(scene: Scene, message_id: str) -> None:
    """What ingest wrote before version 0.2: a TTL on a message still owed."""
    dynamodb_client().update_item(
        TableName=scene.outbox.resources.messages_table,
        Key={"message_id": {"S": message_id}},
        UpdateExpression="SET expires_at = :t",
        ExpressionAttributeValues={":t": {"N": str(epoch_millis(utc_now()) // 1000 + 86_400)}},
    )


def _clear_owed_ttl_with(scene: Scene, meanwhile: Callable[[], None]) -> admin.TtlCleanup:
    """`clear_owed_ttl`, with `meanwhile` run between its scan and its first conditional update."""
    client = operator_client(meanwhile, before="UpdateItem")
    return admin.clear_owed_ttl(client, scene.outbox.settings)


def test_clearing_owed_ttl_keeps_the_ttl_of_a_message_finalized_meanwhile(scene: Scene) -> None:
    """The cleanup read the message PENDING; the relay finalized it before the cleanup's update, and the
    finalize set the TTL a QUEUED message keeps. The cleanup must not remove it (kept for ever)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    _legacy_ttl(scene, message_id)
    entry = scene.entry(message_id)
    relay = scene.relay()

    def finalize() -> None:
        assert relay.acquire(entry.shard, scene.t0)
        assert relay.finalize(entry, scene.send_copy(message_id)).done == [entry]

    result = _clear_owed_ttl_with(scene, finalize)

    assert (result.cleared, result.changed_meanwhile) == (0, 1)
    message = scene.outbox.message(message_id)
    assert message is not None
    assert message["status"] == {"S": Status.QUEUED}
    assert "expires_at" in message


def test_clearing_owed_ttl_keeps_the_ttl_of_a_message_skipped_meanwhile(scene: Scene) -> None:
    """The cleanup read the message FAILED and not skipped; an operator skipped it before the cleanup's
    update (no longer owed: the skip gave it its TTL). The cleanup must leave that TTL."""
    message_id, _ = scene.failed_message()
    _legacy_ttl(scene, message_id)

    result = _clear_owed_ttl_with(scene, lambda: skip(scene, message_id))

    assert (result.cleared, result.changed_meanwhile) == (0, 1)
    message = scene.outbox.message(message_id)
    assert message is not None
    assert "skipped_at" in message
    assert "expires_at" in message


# -- requeue and skip -------------------------------------------------------------------------------------


def test_a_second_requeue_after_the_message_was_delivered_is_refused(scene: Scene) -> None:
    """Two operators requeue the same skipped message (its parked entry gone: a requeue writes a new
    entry). The first requeue is relayed before the second one's transaction: that one must be refused,
    not turn the QUEUED message PENDING again with another entry (a second send)."""
    message_id, _ = scene.failed_message()
    skip(scene, message_id)

    def first_operator_and_a_relay() -> None:
        requeue(scene, message_id, actor="first")
        run_relay(make_relay(scene.outbox))

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        requeue(scene, message_id, client=operator_client(first_operator_and_a_relay), actor="second")

    assert scene.status(message_id) == Status.QUEUED
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id]


def test_a_requeue_racing_a_skip_is_refused(scene: Scene) -> None:
    """The requeue read the entry PARKED; a skip deleted it before the requeue's transaction. The requeue
    must not recreate the entry as a half item (no message id) nor make the message PENDING without one."""
    message_id, _ = scene.failed_message()

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        requeue(scene, message_id, client=operator_client(lambda: skip(scene, message_id, actor="skipper")))

    message = scene.outbox.message(message_id)
    assert message is not None
    assert (message["status"]["S"], message["skipped_by"]["S"]) == (Status.FAILED, "skipper")
    assert scene.outbox.entries() == []


def test_a_requeue_racing_another_requeue_and_the_relays_delivery_is_refused(scene: Scene) -> None:
    """The second operator read the message FAILED and its entry PARKED; the first requeue went through
    and a relay delivered the message before the second requeue's transaction. It must be refused, not
    make the QUEUED message PENDING again over a half entry (no message id) in the shard."""
    message_id, _ = scene.failed_message()

    def first_operator_and_a_relay() -> None:
        requeue(scene, message_id, actor="first")
        run_relay(make_relay(scene.outbox))

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        requeue(scene, message_id, client=operator_client(first_operator_and_a_relay), actor="second")

    assert scene.status(message_id) == Status.QUEUED
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id]


def test_two_skips_at_once_the_second_is_refused(scene: Scene) -> None:
    """The second skip's entry is already gone: it is refused, and the audit names who skipped."""
    message_id, _ = scene.failed_message()

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        skip(
            scene,
            message_id,
            client=operator_client(lambda: skip(scene, message_id, actor="first")),
            actor="second",
        )

    message = scene.outbox.message(message_id)
    assert message is not None
    assert message["skipped_by"] == {"S": "first"}
    assert scene.outbox.entries() == []


def test_a_skip_racing_a_requeue_and_a_relay_is_refused(scene: Scene) -> None:
    """The skip read the message FAILED; a requeue came before its transaction, and a relay took the
    shard and read the entry READY. The skip must not mark the PENDING message skipped (its TTL would
    delete it however the relay's send ends) nor delete the READY entry under the relay."""
    message_id, parked = scene.failed_message()
    relay = scene.relay()

    def requeue_and_a_relay() -> None:
        requeue(scene, message_id, actor="other")
        assert relay.acquire(parked.shard, scene.after_lease)
        assert scene.entry(message_id).state == EntryState.READY

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        skip(scene, message_id, client=operator_client(requeue_and_a_relay))

    assert relay.finalize(parked, scene.send_copy(message_id)).done == [parked]
    message = scene.outbox.message(message_id)
    assert message is not None
    assert message["status"] == {"S": Status.QUEUED}
    assert "skipped_at" not in message
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id]


def test_a_skip_of_a_message_deleted_meanwhile_writes_nothing(scene: Scene) -> None:
    """The message item is deleted by hand between the skip's read and its transaction. The skip must not
    create a half message (no status, no payload) nor drop the parked entry on that basis."""
    message_id, _ = scene.failed_message()
    before_messages, before_entries = scene.tables()

    def delete_by_hand() -> None:
        dynamodb_client().delete_item(
            TableName=scene.outbox.resources.messages_table, Key={"message_id": {"S": message_id}}
        )

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        skip(scene, message_id, client=operator_client(delete_by_hand))

    assert scene.tables() == ([], before_entries)
    assert len(before_messages) == 1

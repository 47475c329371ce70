"""Every guard the guarantees rest on, each pinned by a scenario that fails without it (issue 18).

A guard is a condition on a write (`ConditionExpression`), a token compare, or a check in code that keeps
a write from happening. Each test here builds one interleaving deterministically: relays are driven
through the store's public API with their own claim tokens and claim moments (a "stale" relay is one whose
lease ran out and whose entry another relay claimed), operators' reads and writes are split by a hook on
their own client, and the outcome is read from the tables and the queue directly.

The inventory (which guard, what it protects against, which test pins it) is in ADR 0013; `./dev mutants`
(`chaos/mutants.py`) removes each guard in turn and runs the tests named for it here: none may survive.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from outbox import enqueue, outbox_write
from outbox.core.clients import CLIENT_CONFIG, dynamodb_client, sqs_client
from outbox.core.domain import EntryState, Status, epoch_millis, utc_now
from outbox.local.queue import message_id_of
from outbox.ops import admin
from relay.entries import Entry
from relay.store import FinalizeResult, OutboxStore
from tests.conftest import FakeClock, Outbox, call_ingest, ingest_messages, make_relay, receive_all, run_relay

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Tables = tuple[list[dict[str, Any]], list[dict[str, Any]]]


# -- the cast: relays with their own tokens, operators with their own clients ---------------------------


@dataclass
class RelayHand:
    """One relay as the store sees it: its claim token, its lease, and the calls it makes."""

    store: OutboxStore
    lease_ms: int
    token: str = field(default_factory=lambda: str(uuid.uuid4()))

    def claim(self, entry: Entry, at_ms: int) -> bool:
        claimed, _ = self.store.claim(
            [entry], token=self.token, now_ms=at_ms, lease_until_ms=at_ms + self.lease_ms
        )
        return [claimed_entry.entry_id for claimed_entry in claimed] == [entry.entry_id]

    def finalize(self, entry: Entry, sqs_message_id: str) -> FinalizeResult:
        return self.store.finalize([(entry, sqs_message_id)], token=self.token, now=utc_now())

    def delete_entry(self, entry: Entry) -> bool:
        return self.store.delete_entry(entry, token=self.token)

    def roll_back(self, entry: Entry, *, next_attempt_at_ms: int) -> bool:
        """A counted failure: the claim goes and the entry waits until `next_attempt_at_ms`."""
        return self.store.release(
            entry, token=self.token, counted=True, next_attempt_at_ms=next_attempt_at_ms, error="test failure"
        )

    def hold_back(self, entry: Entry, *, claimed_at_ms: int) -> bool:
        """Not sent (FIFO order, out of lease time): the claim and the `first_send_at` it set go."""
        return self.store.release(entry, token=self.token, counted=False, unstamp_claimed_at_ms=claimed_at_ms)

    def poison(self, entry: Entry, *, unstamp_claimed_at_ms: int | None = None) -> bool:
        """Rejected for good: message FAILED, entry PARKED. `unstamp_claimed_at_ms`: it certainly never
        reached the queue, so the `first_send_at` this claim set goes."""
        return self.store.poison(
            entry,
            token=self.token,
            attempts=entry.attempts + 1,
            error="rejected for good",
            now=utc_now(),
            unstamp_claimed_at_ms=unstamp_claimed_at_ms,
        )


@dataclass
class Scene:
    outbox: Outbox
    t0: int
    """Epoch milliseconds after every message of the scene was accepted: the first claim's moment."""

    @property
    def lease_ms(self) -> int:
        return self.outbox.settings.lease_seconds * 1000

    @property
    def after_lease(self) -> int:
        """A moment past a claim made at `t0`."""
        return self.t0 + self.lease_ms + 1000

    def relay(self) -> RelayHand:
        return RelayHand(make_relay(self.outbox).store, self.lease_ms)

    def entry(self, message_id: str) -> Entry:
        item = next((e for e in self.outbox.entries() if e["message_id"]["S"] == message_id), None)
        assert item is not None, f"no entry for {message_id}"
        return Entry.from_item(item)

    def tables(self) -> Tables:
        """Both tables, whole, in a stable order: "nothing changed" is an equality of two of these."""

        def order(item: dict[str, Any]) -> str:
            return json.dumps(item, sort_keys=True)

        return sorted(self.outbox.messages(), key=order), sorted(self.outbox.entries(), key=order)

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
        """A message poisoned by a relay: FAILED, its entry PARKED."""
        (message_id,) = ingest_messages(self.outbox, 1)
        entry = self.entry(message_id)
        poisoner = self.relay()
        assert poisoner.claim(entry, self.t0)
        assert poisoner.poison(entry)
        assert self.status(message_id) == Status.FAILED
        return message_id, self.entry(message_id)

    def settled_relay_run(self) -> None:
        """A relay run whose clock is past every lease and backoff of the scene."""
        clock = FakeClock()
        clock.advance(3 * self.outbox.settings.lease_seconds + self.outbox.settings.max_backoff_seconds)
        run_relay(make_relay(self.outbox, clock))


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


# -- claim ------------------------------------------------------------------------------------------------


def test_a_claim_is_refused_while_another_relays_claim_is_live(scene: Scene) -> None:
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    first, second = scene.relay(), scene.relay()
    assert first.claim(entry, scene.t0)
    before = scene.tables()

    assert not second.claim(entry, scene.t0 + scene.lease_ms - 1000)

    assert scene.tables() == before
    assert scene.entry(message_id).claim_token == first.token


def test_a_claim_takes_an_entry_whose_lease_ran_out(scene: Scene) -> None:
    """A relay that died after its claim holds the entry only until its lease ends."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    dead, alive = scene.relay(), scene.relay()
    assert dead.claim(entry, scene.t0)

    assert alive.claim(entry, scene.after_lease)

    claimed = scene.entry(message_id)
    assert claimed.claim_token == alive.token
    assert claimed.lease_until == scene.after_lease + scene.lease_ms
    assert claimed.first_send_at == scene.t0  # the first claim's stamp stays: a send may have happened


def test_a_resent_claim_with_the_same_token_is_still_ours(scene: Scene) -> None:
    """A claim whose response was lost is tried again. botocore's own resend of the call reuses its
    ClientRequestToken (DynamoDB answers it idempotently), but a new call, as the relay's retry is, has a
    token of its own and is decided by the conditions: `claim_token = :token` keeps the entry ours."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    relay = scene.relay()
    assert relay.claim(entry, scene.t0)

    assert relay.claim(entry, scene.t0)

    assert scene.entry(message_id).claim_token == relay.token


def test_a_claim_from_a_page_read_before_a_poison_is_refused(scene: Scene) -> None:
    """Relay A read the entry READY; relay B claimed it and parked it (a definite rejection). A's claim,
    past B's lease, must not take the parked entry (its message is FAILED: A would drop the entry)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    read_by_a = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert b.claim(read_by_a, scene.t0)
    assert b.poison(read_by_a)
    before = scene.tables()

    assert not a.claim(read_by_a, scene.after_lease)

    assert scene.tables() == before
    assert scene.entry(message_id).state == EntryState.PARKED


def test_a_claim_from_a_page_read_before_a_rollback_waits_for_the_backoff(scene: Scene) -> None:
    (message_id,) = ingest_messages(scene.outbox, 1)
    read_by_a = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert b.claim(read_by_a, scene.t0)
    assert b.roll_back(read_by_a, next_attempt_at_ms=scene.t0 + 100_000)
    before = scene.tables()

    assert not a.claim(read_by_a, scene.t0 + 50_000)

    assert scene.tables() == before


def test_a_claim_of_an_entry_finalized_meanwhile_creates_nothing(scene: Scene) -> None:
    """A claim is an update: on a deleted entry it must not create a half item (no message id) that every
    later read of the shard trips over. Three parts of the condition refuse it (the entry must exist, be
    READY, and be due), so removing any one of them alone changes nothing (ADR 0013)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    read_by_a = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert b.claim(read_by_a, scene.t0)
    assert b.finalize(read_by_a, scene.send_copy(message_id)).done

    assert not a.claim(read_by_a, scene.t0 + 1000)

    assert scene.outbox.entries() == []
    assert scene.status(message_id) == Status.QUEUED


# -- finalize and the entry deletes that follow it ----------------------------------------------------


def test_a_stale_finalize_is_refused_while_another_relay_holds_the_claim(scene: Scene) -> None:
    """A sent, then stalled past its lease; B claimed the entry and is sending. A's finalize must leave
    B's claim and the message alone; B finishes. Both copies carry the same message_id (ADR 0009)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    sent_by_a = scene.send_copy(message_id)
    assert b.claim(entry, scene.after_lease)
    before = scene.tables()

    result = a.finalize(entry, sent_by_a)

    assert result.done == []
    assert result.claim_lost == [entry]
    assert scene.tables() == before
    sent_by_b = scene.send_copy(message_id)
    assert b.finalize(entry, sent_by_b).done == [entry]
    message = scene.outbox.message(message_id)
    assert message is not None
    assert (message["status"]["S"], message["sqs_message_id"]["S"]) == (Status.QUEUED, sent_by_b)
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id, message_id]


def test_a_stale_finalize_after_another_relay_poisoned_changes_nothing(scene: Scene) -> None:
    """A finalize racing a poison: B's poison came first. A's finalize, and the entry delete a relay makes
    after a finalize that found its message moved on, must leave the message FAILED and its entry PARKED
    (the operator decides: requeue or skip)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    sent_by_a = scene.send_copy(message_id)
    assert b.claim(entry, scene.after_lease)
    assert b.poison(entry)
    before = scene.tables()

    result = a.finalize(entry, sent_by_a)
    deleted = a.delete_entry(entry)

    assert (result.done, deleted) == ([], False)
    assert scene.tables() == before
    assert scene.status(message_id) == Status.FAILED
    assert scene.entry(message_id).state == EntryState.PARKED


def test_a_stale_finalize_after_a_requeue_changes_nothing(scene: Scene) -> None:
    """A finalize racing a poison and a requeue: the message is PENDING again, its entry READY and
    unclaimed. A's late finalize must not take the requeue (mark QUEUED, delete the entry); the next relay
    run sends the message as the operator asked."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    sent_by_a = scene.send_copy(message_id)
    assert b.claim(entry, scene.after_lease)
    assert b.poison(entry)
    requeue(scene, message_id)
    before = scene.tables()

    result = a.finalize(entry, sent_by_a)

    assert result.done == []
    assert scene.tables() == before
    scene.settled_relay_run()
    assert scene.status(message_id) == Status.QUEUED
    assert scene.outbox.entries() == []
    assert scene.received() == [message_id, message_id]  # A's copy, and the requeued send


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


def test_a_claimed_entry_whose_message_moved_on_is_dropped_unsent(scene: Scene) -> None:
    """The message moves on between the claim and the payload read: the relay must not send it."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    once_after(
        dynamodb_client(),
        "after-call.dynamodb.TransactWriteItems",
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
    """The relay stalls between its claim and its send until the lease has run out: another relay may
    hold the entry now. No send may start; the entry is given back unsent and the next run sends it once."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    clock = SteppedClock()
    lease = scene.outbox.settings.lease_seconds
    once_after(dynamodb_client(), "after-call.dynamodb.TransactWriteItems", lambda: clock.stall(lease))

    summary = make_relay(scene.outbox, clock).run(clock.monotonic() + 3600)

    assert summary.sent == 0
    assert scene.received() == []
    assert scene.status(message_id) == Status.PENDING
    assert scene.entry(message_id).claim_token is None
    scene.settled_relay_run()
    assert scene.received() == [message_id]


def test_a_send_retry_never_starts_past_the_lease(scene: Scene) -> None:
    """The first send call fails as a whole (the connection drops) and takes until past the lease. The
    retry must not go out: the entry comes back as a possible send, for a later run with a claim of its
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
    assert scene.entry(message_id).claim_token is None
    scene.settled_relay_run()
    assert scene.received() == [message_id]


# -- release ----------------------------------------------------------------------------------------------


def test_a_stale_release_is_refused_while_another_relay_holds_the_claim(scene: Scene) -> None:
    """A's send failed (or was held back) after its lease ran out and B claimed the entry. A's release,
    counted or not, must not take B's claim away (a third relay could then send alongside B)."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    assert b.claim(entry, scene.after_lease)
    before = scene.tables()

    rolled_back = a.roll_back(entry, next_attempt_at_ms=scene.after_lease + 10_000)
    held_back = a.hold_back(entry, claimed_at_ms=scene.t0)

    assert (rolled_back, held_back) == (False, False)
    assert scene.tables() == before


def test_a_release_after_another_relays_finalize_creates_no_entry(scene: Scene) -> None:
    """A release is an update: after B's finalize deleted the entry it must not create a half entry (no
    message id, no state) that breaks every later read of its shard."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    assert b.claim(entry, scene.after_lease)
    assert b.finalize(entry, scene.send_copy(message_id)).done == [entry]

    rolled_back = a.roll_back(entry, next_attempt_at_ms=scene.after_lease + 10_000)
    held_back = a.hold_back(entry, claimed_at_ms=scene.t0)

    assert (rolled_back, held_back) == (False, False)
    assert scene.outbox.entries() == []
    assert scene.status(message_id) == Status.QUEUED
    assert scene.received() == [message_id]


def test_a_hold_back_keeps_the_first_send_stamp_of_an_earlier_claim(scene: Scene) -> None:
    """B read the entry unstamped, but A claimed it first (and may have sent it) and died. B, holding it
    back, removes only a stamp its own claim set: A's stays, so the next send counts as a possible resend
    (and, on FIFO, its age against SQS's deduplication window). The claim itself is still given back."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    read_unstamped = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(read_unstamped, scene.t0)
    assert b.claim(read_unstamped, scene.after_lease)

    assert b.hold_back(read_unstamped, claimed_at_ms=scene.after_lease)

    entry = scene.entry(message_id)
    assert (entry.claim_token, entry.lease_until) == (None, None)
    assert entry.first_send_at == scene.t0
    assert entry.attempts == 0


# -- poison -----------------------------------------------------------------------------------------------


def test_a_stale_poison_is_refused_while_another_relay_holds_the_claim(scene: Scene) -> None:
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    assert b.claim(entry, scene.after_lease)
    before = scene.tables()

    assert not a.poison(entry)

    assert scene.tables() == before
    assert scene.status(message_id) == Status.PENDING


def test_a_stale_poison_after_another_relays_finalize_changes_nothing(scene: Scene) -> None:
    """A's send was rejected, but its lease had run out and B delivered the message. A's poison must not
    mark a QUEUED message FAILED, nor leave a parked half entry behind."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(entry, scene.t0)
    assert b.claim(entry, scene.after_lease)
    assert b.finalize(entry, scene.send_copy(message_id)).done == [entry]
    before = scene.tables()

    assert not a.poison(entry)

    assert scene.tables() == before
    assert scene.status(message_id) == Status.QUEUED
    assert scene.outbox.entries() == []


def test_a_poison_never_fails_a_message_moved_on_by_someone_else(scene: Scene) -> None:
    (message_id,) = ingest_messages(scene.outbox, 1)
    entry = scene.entry(message_id)
    relay = scene.relay()
    assert relay.claim(entry, scene.t0)
    scene.set_status(message_id, Status.PROCESSING)
    before = scene.tables()

    assert not relay.poison(entry)

    assert scene.tables() == before


def test_a_poison_keeps_the_first_send_stamp_of_an_earlier_claim(scene: Scene) -> None:
    """B read the entry unstamped, but A claimed it first (and may have sent it) and died. B's send is
    rejected for good: B parks the entry and removes only a stamp its own claim set, so a later requeue
    still counts as a possible resend of A's copy."""
    (message_id,) = ingest_messages(scene.outbox, 1)
    read_unstamped = scene.entry(message_id)
    a, b = scene.relay(), scene.relay()
    assert a.claim(read_unstamped, scene.t0)
    assert b.claim(read_unstamped, scene.after_lease)

    assert b.poison(read_unstamped, unstamp_claimed_at_ms=scene.after_lease)

    assert scene.status(message_id) == Status.FAILED
    entry = scene.entry(message_id)
    assert (entry.state, entry.claim_token) == (EntryState.PARKED, None)
    assert entry.first_send_at == scene.t0


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
        assert relay.claim(entry, scene.t0)
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


def test_a_requeue_racing_another_requeue_leaves_the_relays_claim_alone(scene: Scene) -> None:
    """The first requeue went through and a relay claimed the entry; the second requeue's transaction must
    be refused, not reset the entry under the relay (its claim gone: another relay would send too)."""
    message_id, parked = scene.failed_message()
    relay = scene.relay()

    def first_operator_and_a_claim() -> None:
        requeue(scene, message_id, actor="first")
        assert relay.claim(scene.entry(message_id), scene.after_lease)

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        requeue(scene, message_id, client=operator_client(first_operator_and_a_claim), actor="second")

    assert scene.entry(message_id).claim_token == relay.token
    assert relay.finalize(parked, scene.send_copy(message_id)).done == [parked]
    assert scene.status(message_id) == Status.QUEUED
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
    """The skip read the message FAILED; a requeue and a relay's claim came before its transaction. The
    skip must not delete the claimed entry of a PENDING message: the relay's finalize would then fail and
    the message stay PENDING with no entry, never sent."""
    message_id, parked = scene.failed_message()
    relay = scene.relay()

    def requeue_and_claim() -> None:
        requeue(scene, message_id, actor="other")
        assert relay.claim(scene.entry(message_id), scene.after_lease)

    with pytest.raises(admin.NotFailed, match="changed while this ran"):
        skip(scene, message_id, client=operator_client(requeue_and_claim))

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

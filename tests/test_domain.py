from __future__ import annotations

import json
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from outbox.core.domain import (
    ALLOWED_TRANSITIONS,
    Status,
    _Uuid7Source,
    can_transition,
    keyed_message_id,
    new_time_ordered_id,
    request_hash,
    shard_for,
    time_ordered_id_millis,
)
from outbox.data.transactions import CLIENT_REQUEST_TOKEN_LENGTH, client_request_token


def test_no_status_moves_backwards_except_requeue_and_a_consumers_failure() -> None:
    order = [Status.PENDING, Status.QUEUED, Status.PROCESSING, Status.COMPLETED]
    backwards = {
        (Status.FAILED, Status.PENDING),  # requeue, audited
        (Status.DEAD_LETTERED, Status.PENDING),  # redrive, audited
        (Status.PROCESSING, Status.QUEUED),  # a consumer's failure, recorded
    }
    for current, targets in ALLOWED_TRANSITIONS.items():
        for target in targets:
            if (current, target) in backwards or target in {Status.FAILED, Status.DEAD_LETTERED}:
                continue
            if current is Status.DEAD_LETTERED:  # SQS's own redrive: a consumer takes it again
                assert target is Status.PROCESSING
                continue
            assert order.index(target) > order.index(current)
    assert not can_transition(Status.QUEUED, Status.PENDING)
    assert not can_transition(Status.COMPLETED, Status.PROCESSING)
    assert can_transition(Status.PENDING, Status.QUEUED)


def test_time_ordered_ids_sort_in_creation_order_within_one_millisecond() -> None:
    source = _Uuid7Source()  # its own source: explicit timestamps must not move the shared one's clock
    ids = [source(1_700_000_000_000) for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(value).version == 7 for value in ids)


def test_time_ordered_ids_follow_the_clock() -> None:
    source = _Uuid7Source()
    first = source(1_800_000_000_000)
    assert first < source(1_800_000_000_001)
    assert time_ordered_id_millis(first) == 1_800_000_000_000
    assert first < source(1_700_000_000_000)  # a clock stepping back never reorders ids


def test_the_shared_source_makes_version_7_ids_of_now() -> None:
    value = new_time_ordered_id()
    assert uuid.UUID(value).version == 7
    assert abs(time_ordered_id_millis(value) - time.time() * 1000) < 5000


def test_keyed_ids_are_stable_per_principal_and_never_shared() -> None:
    alice = keyed_message_id("111:user/alice", "order-1")
    assert alice == keyed_message_id("111:user/alice", "order-1")
    assert alice != keyed_message_id("111:user/bob", "order-1")
    assert alice != keyed_message_id("111:user/alice", "order-2")


@given(st.text(min_size=1), st.integers(min_value=1, max_value=64))
def test_shard_is_stable_and_in_range(key: str, shards: int) -> None:
    shard = shard_for(key, shards)
    assert shard == shard_for(key, shards)
    assert 0 <= int(shard) < shards


def test_shards_spread_messages() -> None:
    counts = [0] * 8
    for n in range(4000):
        counts[int(shard_for(f"message-{n}", 8))] += 1
    assert min(counts) > 400


def test_request_hash_ignores_key_order_but_not_content() -> None:
    a = request_hash(json.dumps({"a": 1, "b": 2}), {"x": "1", "y": "2"}, None)
    b = request_hash(json.dumps({"b": 2, "a": 1}), {"y": "2", "x": "1"}, None)
    assert a == b
    assert a != request_hash(json.dumps({"a": 1, "b": 3}), {"x": "1", "y": "2"}, None)
    assert a != request_hash(json.dumps({"a": 1, "b": 2}), {"x": "1", "y": "2"}, "g")


def test_client_request_token_fits_dynamodbs_limit_and_is_deterministic() -> None:
    items = [{"Put": {"TableName": "t", "Item": {"k": {"S": "v"}}}}]
    token = client_request_token(items)
    assert len(token) <= CLIENT_REQUEST_TOKEN_LENGTH == 36
    assert token == client_request_token([{"Put": {"Item": {"k": {"S": "v"}}, "TableName": "t"}}])
    assert token != client_request_token([{"Put": {"TableName": "t", "Item": {"k": {"S": "w"}}}}])

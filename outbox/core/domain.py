"""The message lifecycle, identifiers and placement rules, as plain values and pure functions."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from outbox.core import exact_json


class Status(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DEAD_LETTERED = "DEAD_LETTERED"
    """Found in the dead-letter queue by `outbox dlq` (ADR 0020): a consumer gave up on it."""


ALLOWED_TRANSITIONS: Final[Mapping[Status, frozenset[Status]]] = {
    # PENDING → PROCESSING: SQS may deliver between the relay's send and its finalize (ADR 0019).
    Status.PENDING: frozenset({Status.QUEUED, Status.FAILED, Status.PROCESSING, Status.DEAD_LETTERED}),
    Status.QUEUED: frozenset({Status.PROCESSING, Status.DEAD_LETTERED}),
    # PROCESSING → QUEUED: the consumer's function failed; the error and the attempt are recorded and SQS
    # delivers the message again (ADR 0019).
    Status.PROCESSING: frozenset({Status.COMPLETED, Status.QUEUED, Status.DEAD_LETTERED}),
    Status.COMPLETED: frozenset(),
    # An explicit, audited requeue.
    Status.FAILED: frozenset({Status.PENDING}),
    # An explicit, audited redrive through the outbox (ADR 0020); PROCESSING when SQS's own redrive moved
    # the message back to the queue and a consumer took it.
    Status.DEAD_LETTERED: frozenset({Status.PENDING, Status.PROCESSING}),
}
"""Every status change is a conditional write on the current status; nothing else moves a status. Moves
back: requeue and redrive (audited, by an operator) and a consumer's failure (recorded on the message)."""


def can_transition(current: Status, target: Status) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


class EntryState(StrEnum):
    READY = "READY"
    PARKED = "PARKED"


ANONYMOUS: Final = "anonymous"
_KEYED_ID_NAMESPACE: Final = uuid.UUID("5b0c6f0e-5e53-4c8e-9a55-0b7d1f3c2a10")


def keyed_message_id(principal: str, idempotency_key: str) -> str:
    """The message id for a request with an `Idempotency-Key`: the same for the same caller and key,
    different across callers, so two callers' keys never collide."""
    return str(uuid.uuid5(_KEYED_ID_NAMESPACE, f"{principal}\n{idempotency_key}"))


_ISSUED_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_issued_message_id(value: str) -> bool:
    """Whether `value` has the shape of every message id we issue: a UUID (v7 from `new_time_ordered_id`,
    v5 from `keyed_message_id`) as `str(uuid.UUID)` writes it, 36 characters, lower-case hex and hyphens.

    Anything else names no message, so a read can answer "not found" without asking DynamoDB, which would
    refuse a key over 2,048 bytes with a `ValidationException` rather than miss it.
    """
    return len(value) == 36 and _ISSUED_ID.fullmatch(value) is not None


class _Uuid7Source:
    """RFC 9562 UUIDv7 (48-bit Unix milliseconds, then random bits), monotonic within a process.

    Python 3.11 has no `uuid.uuid7`. Within one millisecond the 12-bit `rand_a` field counts up so ids
    made one after another in a process sort in the order they were made (docs/design.md §4.7 relies on it for
    FIFO ordering); across processes the order is the clocks' order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self, now_ms: int | None = None) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter > 0xFFF:  # counter spent: borrow the next millisecond
                    ms += 1
                    self._counter = 0
            else:
                self._counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
            self._last_ms = ms
            counter = self._counter
        rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
        return str(uuid.UUID(int=value))


new_time_ordered_id = _Uuid7Source()


def shard_for(placement_key: str, shards: int) -> str:
    """The outbox shard of a message: a stable hash of its group id (FIFO) or message id, mod `shards`.

    One FIFO group always lands in one shard, so its entries are read in order from one partition.
    """
    digest = hashlib.sha256(placement_key.encode("utf-8")).digest()
    return str(int.from_bytes(digest[:8], "big") % shards)


def request_hash(payload_json: str, attributes: Mapping[str, str], group_id: str | None) -> str:
    """sha256 of the canonical request, to tell a replay from a reuse of a key.

    Canonical: sorted-key compact JSON with every number written by its exact value
    (`exact_json.canonical_number`). Numerically equal requests are one request (`1`, `1.0` and `1.00`:
    a replay); numbers that differ in any digit differ (`0.1` and `0.1000000000000000055511151231257827`:
    a conflict). Integers hash as before, so a key used with integer payloads keeps working across this
    change.
    """
    document = {
        "payload": exact_json.loads(payload_json),
        "attributes": dict(attributes),
        "group_id": group_id,
    }
    canonical = exact_json.dumps(document, sort_keys=True, canonical=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, the one time format stored and returned."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def time_ordered_id_millis(value: str) -> int:
    """The Unix milliseconds a UUIDv7 was made at (its first 48 bits)."""
    return uuid.UUID(value).int >> 80

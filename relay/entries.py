"""Outbox entries as the relay reads them, and the outcome of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from outbox.core.domain import EntryState
from outbox.core.schema import MESSAGE_KEY, OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


@dataclass(frozen=True, slots=True)
class Entry:
    shard: str
    entry_id: str
    message_id: str
    group_id: str | None
    state: str
    attempts: int
    next_attempt_at: int
    """Epoch milliseconds before which the entry waits (backoff)."""
    first_send_at: int | None
    """Epoch milliseconds of the first send that may have reached SQS without being finalized (stamped by
    a rollback): set once, it marks a possible resend (ADR 0009)."""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Entry:
        def number(name: str) -> int | None:
            return int(item[name]["N"]) if name in item else None

        def text(name: str) -> str | None:
            return str(item[name]["S"]) if name in item else None

        return cls(
            shard=item[OUTBOX_PARTITION_KEY]["S"],
            entry_id=item[OUTBOX_SORT_KEY]["S"],
            message_id=item[MESSAGE_KEY]["S"],
            group_id=text("group_id"),
            state=item.get("state", {}).get("S", EntryState.READY),
            attempts=number("attempts") or 0,
            next_attempt_at=number("next_attempt_at") or 0,
            first_send_at=number("first_send_at"),
        )

    @property
    def key(self) -> dict[str, AttributeValueTypeDef]:
        return {OUTBOX_PARTITION_KEY: {"S": self.shard}, OUTBOX_SORT_KEY: {"S": self.entry_id}}

    def claimable(self, now_ms: int) -> bool:
        """READY and due: the shard's lease holder may send it now. `claim_token`/`lease_until` that items
        written before ADR 0018 may still carry mean nothing any more: the shard's lease fences."""
        return self.state == EntryState.READY and self.next_attempt_at <= now_ms


@dataclass
class RunSummary:
    """What one relay run did; the handler returns it and publishes it as metrics."""

    sent: int = 0
    rolled_back: int = 0
    poisoned: int = 0
    retries: int = 0
    duplicates_possible: int = 0
    resent_after_window: int = 0
    """FIFO resends more than 4 minutes after the first claim: SQS may no longer drop them
    (docs/design.md §4.5)."""
    drained: bool = True
    """Every shard this run worked was left with nothing due (ADR 0018): a shard skipped because another
    relay held its lease (`shards_busy`) does not make a run undrained, its holder drains it."""
    finalize_failed: int = 0
    held_back: int = 0
    stale: int = 0
    shards_busy: int = 0
    """Shards skipped because another relay held their lease (it drains them): not an undrained run."""
    leases_lost: int = 0
    """Shards stopped because their lease was taken over (or could not be confirmed) mid-pass."""
    relay_errors: int = 0
    oldest_pending_age_seconds: float = 0.0
    batches: int = 0
    batch_seconds_total: float = 0.0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: RunSummary) -> None:
        for name in (
            "sent",
            "rolled_back",
            "poisoned",
            "retries",
            "duplicates_possible",
            "resent_after_window",
            "finalize_failed",
            "held_back",
            "stale",
            "shards_busy",
            "leases_lost",
            "relay_errors",
            "batches",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.batch_seconds_total += other.batch_seconds_total
        self.drained = self.drained and other.drained
        self.oldest_pending_age_seconds = max(
            self.oldest_pending_age_seconds, other.oldest_pending_age_seconds
        )
        self.errors.extend(other.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "rolled_back": self.rolled_back,
            "poisoned": self.poisoned,
            "retries": self.retries,
            "duplicates_possible": self.duplicates_possible,
            "resent_after_window": self.resent_after_window,
            "drained": self.drained,
            "finalize_failed": self.finalize_failed,
            "held_back": self.held_back,
            "stale": self.stale,
            "shards_busy": self.shards_busy,
            "leases_lost": self.leases_lost,
            "relay_errors": self.relay_errors,
            "oldest_pending_age_seconds": round(self.oldest_pending_age_seconds, 3),
            "batches": self.batches,
            "errors": self.errors[:20],
        }

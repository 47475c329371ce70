"""Fenced shard leases (ADR 0018): one item per shard says which relay may work it.

`relay.core.Relay` acquires a shard's lease before it reads the shard, renews it (with the batch's
watermark) before every batch it sends, puts `check_action` first in every transaction it writes under
it, and releases it when the shard is done. They replace ADR 0005's per-entry claims.

A lease item lives in the Outbox table under a partition of its own, `lease#<shard>`, so its writes never
share the shard's partition and a `Query` of the shard never returns it. Every acquisition adds one to
`fence`; every later write of the holder, and the `ConditionCheck` a finalize carries, requires both its
`holder` token and its `fence`, so a relay whose lease was taken over can change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from outbox.core.schema import OUTBOX_PARTITION_KEY, OUTBOX_SORT_KEY
from outbox.data.transact import CONDITION_FAILED

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

LEASE_PARTITION_PREFIX: Final = "lease#"
LEASE_SORT_KEY: Final = "lease"
"""The lease of shard `n` is the item (`lease#n`, `lease`) of the Outbox table."""
_CONDITIONAL_CHECK_FAILED: Final = "ConditionalCheckFailedException"


class LeaseLost(Exception):
    """The lease was taken over (another acquisition raised its fence) or released: stop the shard."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """What an unreleased lease was sending when its holder stopped writing: entries up to `sending_upto`
    may already be in the queue, sent since `sending_since_ms` (epoch ms)."""

    sending_upto: str
    sending_since_ms: int


@dataclass(frozen=True, slots=True)
class ShardLease:
    shard: str
    holder: str
    """A token of this acquisition (never reused: a retried acquire with the same token is ours)."""
    fence: int
    lease_until_ms: int
    taken_over: Watermark | None = None
    """Set when this acquisition took the lease from a holder that neither released it nor cleared its
    watermark: the resends it may cause are counted (ADR 0009)."""


def lease_key(shard: str) -> dict[str, AttributeValueTypeDef]:
    return {
        OUTBOX_PARTITION_KEY: {"S": f"{LEASE_PARTITION_PREFIX}{shard}"},
        OUTBOX_SORT_KEY: {"S": LEASE_SORT_KEY},
    }


def is_lease_partition(partition: str) -> bool:
    """Outbox partitions that hold a lease, not entries: scans and doorbells skip them."""
    return partition.startswith(LEASE_PARTITION_PREFIX)


def entries_only() -> dict[str, Any]:
    """`Scan` arguments that leave the lease partitions out of a scan of the Outbox table (what counts as
    an outbox entry: stats, checks, benchmarks). Merge them into the scan's own arguments."""
    return {
        "FilterExpression": "NOT begins_with(#partition, :lease)",
        "ExpressionAttributeNames": {"#partition": OUTBOX_PARTITION_KEY},
        "ExpressionAttributeValues": {":lease": {"S": LEASE_PARTITION_PREFIX}},
    }


class ShardLeases:
    """Acquire, renew, release and check shard leases in `outbox_table`, each one conditional write."""

    def __init__(self, client: DynamoDBClient, *, outbox_table: str, lease_seconds: int) -> None:
        self._client = client
        self._table = outbox_table
        self._lease_ms = lease_seconds * 1000
        self.calls = 0

    def acquire(self, shard: str, *, holder: str, now_ms: int) -> ShardLease | None:
        """Take `shard` for `lease_seconds` unless another relay holds it: None then (skip the shard).

        Free means never taken, released, or expired (`lease_until < now`: its holder stopped renewing);
        a lease already `holder`'s (this acquire resent after a lost response) is taken again. The fence
        grows by one either way, so any write of an earlier acquisition now fails."""
        try:
            self.calls += 1
            response = self._client.update_item(
                TableName=self._table,
                Key=lease_key(shard),
                UpdateExpression="SET holder = :me, lease_until = :until REMOVE released ADD fence :one",
                ConditionExpression=(
                    "attribute_not_exists(holder) OR released = :true OR lease_until < :now OR holder = :me"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": holder},
                    ":until": {"N": str(now_ms + self._lease_ms)},
                    ":now": {"N": str(now_ms)},
                    ":one": {"N": "1"},
                    ":true": {"BOOL": True},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return None
            raise
        old = response.get("Attributes", {})
        return ShardLease(
            shard=shard,
            holder=holder,
            fence=_number(old, "fence") + 1,
            lease_until_ms=now_ms + self._lease_ms,
            taken_over=_watermark_left(old),
        )

    def renew(self, lease: ShardLease, *, now_ms: int, sending_upto: str | None = None) -> ShardLease:
        """Extend the lease before a batch is sent, recording the batch's last entry as the watermark
        (or clearing it). `LeaseLost` when another acquisition raised the fence or the lease was
        released: nothing of the batch may be sent."""
        values: dict[str, AttributeValueTypeDef] = {
            ":me": {"S": lease.holder},
            ":fence": {"N": str(lease.fence)},
            ":until": {"N": str(now_ms + self._lease_ms)},
        }
        if sending_upto is None:
            update = "SET lease_until = :until REMOVE sending_upto, sending_since"
        else:
            update = "SET lease_until = :until, sending_upto = :upto, sending_since = :now"
            values[":upto"] = {"S": sending_upto}
            values[":now"] = {"N": str(now_ms)}
        self._fenced_update(
            lease,
            update=update,
            condition="holder = :me AND fence = :fence AND attribute_not_exists(released)",
            values=values,
        )
        return ShardLease(lease.shard, lease.holder, lease.fence, now_ms + self._lease_ms, lease.taken_over)

    def release(self, lease: ShardLease) -> bool:
        """Give the shard up (its watermark with it: everything sent under it is finalized or settled).
        False when it was no longer ours (taken over meanwhile): nothing to give up. A release resent
        after a lost response finds the lease still released by us and succeeds again."""
        try:
            self._fenced_update(
                lease,
                update="SET released = :true REMOVE sending_upto, sending_since",
                condition="holder = :me AND fence = :fence",
                values={
                    ":me": {"S": lease.holder},
                    ":fence": {"N": str(lease.fence)},
                    ":true": {"BOOL": True},
                },
            )
        except LeaseLost:
            return False
        return True

    def check_action(self, lease: ShardLease) -> TransactWriteItemTypeDef:
        """The `ConditionCheck` a finalize (or a failure's settlement) carries: its transaction commits
        only while the lease is still this acquisition's."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": lease_key(lease.shard),
                "ConditionExpression": "holder = :me AND fence = :fence AND attribute_not_exists(released)",
                "ExpressionAttributeValues": {
                    ":me": {"S": lease.holder},
                    ":fence": {"N": str(lease.fence)},
                },
            }
        }

    def _fenced_update(
        self, lease: ShardLease, *, update: str, condition: str, values: dict[str, AttributeValueTypeDef]
    ) -> None:
        try:
            self.calls += 1
            self._client.update_item(
                TableName=self._table,
                Key=lease_key(lease.shard),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _condition_failed(exc):
                raise LeaseLost(f"shard {lease.shard}: lease {lease.fence} is no longer ours") from None
            raise


def _condition_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in {_CONDITIONAL_CHECK_FAILED, CONDITION_FAILED}


def _number(item: dict[str, Any], name: str) -> int:
    return int(item[name]["N"]) if name in item else 0


def _watermark_left(old: dict[str, Any]) -> Watermark | None:
    """The watermark a previous holder left behind (not released, still sending), if any. An acquire
    keeps the watermark until its first renew, so a resent acquire of our own (a lost response) still
    finds the one its first attempt took over: an acquisition never renews before its acquire returned.
    Our own lease without one: nothing was taken over."""
    if "sending_upto" not in old or old.get("released", {}).get("BOOL"):
        return None
    return Watermark(old["sending_upto"]["S"], _number(old, "sending_since"))

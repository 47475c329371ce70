"""Settings, parsed once from the environment into a frozen, validated object (docs/design.md §6).

A missing or malformed variable, or a combination that breaks the lease/deduplication relations of
docs/design.md §4.6, raises `SettingsError` naming the variable, at start-up rather than mid-run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from outbox.core.schema import bucket_name_problem, is_fifo_queue

FIFO_DEDUPLICATION_SECONDS: Final = 300
"""SQS FIFO queues drop a message whose deduplication id was sent within the last 5 minutes."""
FIFO_RESEND_WINDOW_SECONDS: Final = 240
"""Resends on FIFO stay within 4 minutes of the first send: inside SQS's 5-minute dedup window."""
CLAIM_TO_FINALIZE_BUDGET_SECONDS: Final = 10
"""The longest a claim batch may take from claim to finalize; a lease must be at least 3x this."""
DYNAMODB_ITEM_LIMIT_BYTES: Final = 400_000
MAX_PAYLOAD_CEILING_BYTES: Final = 350_000
"""A payload above this could not fit a 400 KB message item together with its attributes, nor an item of
the Payloads table: above it, a payload goes to S3 (`PAYLOADS_BUCKET`, the claim check of ADR 0023) or is
refused."""
S3_MAX_PAYLOAD_BYTES: Final = 5_000_000
"""The largest `MAX_PAYLOAD_BYTES` with `PAYLOADS_BUCKET` set. The HTTP API is the bound: API Gateway's
HTTP APIs take 10 MB, but Lambda takes at most 6 MB (6,291,456 bytes) in a synchronous invocation, and the
request reaches the ingest function as an event that wraps the body (headers, request context: a few KB)
as a JSON string, in which every quote and backslash of the payload is escaped once more. 5,000,000 bytes
of payload leave 1.29 MB, a quarter of the payload again, for that envelope, that escaping, and the
request's attributes and whitespace; and `GET ?include=payload`, which carries the payload back, stays
under Lambda's 6 MB response limit too. (A base64-encoded request body grows by a third on the way: it
holds about 4.5 MB of payload.) The library path (`outbox_write`, `enqueue`) has no such bound; one
maximum serves both, and keeps every payload within what the HTTP API can read back."""
LOG_LEVELS: Final = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class SettingsError(ValueError):
    """A variable is missing or bad; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    messages_table: str
    outbox_table: str
    queue_url: str
    outbox_shards: int = 8
    max_attempts: int = 8
    lease_seconds: int = 60
    max_backoff_seconds: int = 120
    schedule_seconds: int = 60
    max_payload_bytes: int = 262_144
    retention_days: int = 14
    log_level: str = "INFO"
    payloads_table: str | None = None
    """Where payloads too large to ride in their message item go (ADR 0023); None: every payload stays in
    its message item, as before the Payloads table existed."""
    payloads_bucket: str | None = None
    """The S3 bucket of the claim check (ADR 0023): a payload above `MAX_PAYLOAD_CEILING_BYTES` is written
    there as an object and relayed as a pointer the AWS SQS Extended Client libraries read. None: no
    payload above the ceiling is accepted, and `max_payload_bytes` stays within it."""

    @property
    def fifo(self) -> bool:
        return is_fifo_queue(self.queue_url)

    @property
    def claim_check(self) -> bool:
        """Whether payloads above the item ceiling may go to S3 (`payloads_bucket` is set)."""
        return self.payloads_bucket is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise `SettingsError` on the first bad one."""
        env = os.environ if environ is None else environ
        settings = cls(
            messages_table=_required(env, "MESSAGES_TABLE"),
            outbox_table=_required(env, "OUTBOX_TABLE"),
            queue_url=_required(env, "QUEUE_URL"),
            outbox_shards=_integer(env, "OUTBOX_SHARDS", cls.outbox_shards, low=1, high=1000),
            max_attempts=_integer(env, "MAX_ATTEMPTS", cls.max_attempts, low=1, high=100),
            lease_seconds=_integer(env, "LEASE_SECONDS", cls.lease_seconds, low=1, high=3600),
            max_backoff_seconds=_integer(
                env, "MAX_BACKOFF_SECONDS", cls.max_backoff_seconds, low=1, high=86_400
            ),
            schedule_seconds=_integer(env, "SCHEDULE_SECONDS", cls.schedule_seconds, low=60, high=86_400),
            max_payload_bytes=_integer(
                env, "MAX_PAYLOAD_BYTES", cls.max_payload_bytes, low=1, high=S3_MAX_PAYLOAD_BYTES
            ),
            retention_days=_integer(env, "RETENTION_DAYS", cls.retention_days, low=1, high=3650),
            log_level=_choice(env, "LOG_LEVEL", cls.log_level, LOG_LEVELS),
            payloads_table=env.get("PAYLOADS_TABLE", "").strip() or None,
            payloads_bucket=_bucket(env, "PAYLOADS_BUCKET"),
        )
        settings.check_relations()
        return settings

    def check_relations(self) -> None:
        """docs/design.md §4.6: leases outlast a claim batch; FIFO resends stay inside the dedup window.
        And a payload above what a DynamoDB item holds needs the S3 bucket to go to (ADR 0023)."""
        if self.max_payload_bytes > MAX_PAYLOAD_CEILING_BYTES and self.payloads_bucket is None:
            raise SettingsError(
                "MAX_PAYLOAD_BYTES",
                f"{self.max_payload_bytes} is above the {MAX_PAYLOAD_CEILING_BYTES} bytes a DynamoDB item "
                "holds: a larger payload goes to S3, so set PAYLOADS_BUCKET too "
                f"(then up to {S3_MAX_PAYLOAD_BYTES})",
            )
        if self.lease_seconds < 3 * CLAIM_TO_FINALIZE_BUDGET_SECONDS:
            raise SettingsError(
                "LEASE_SECONDS",
                f"{self.lease_seconds} is under 3x the "
                f"{CLAIM_TO_FINALIZE_BUDGET_SECONDS} s claim-to-finalize budget",
            )
        if not self.fifo:
            return
        if self.lease_seconds + self.schedule_seconds > FIFO_RESEND_WINDOW_SECONDS:
            raise SettingsError(
                "LEASE_SECONDS",
                f"LEASE_SECONDS + SCHEDULE_SECONDS = {self.lease_seconds + self.schedule_seconds} s exceeds "
                f"the {FIFO_RESEND_WINDOW_SECONDS} s FIFO resend window",
            )
        if self.max_backoff_seconds + self.schedule_seconds > FIFO_RESEND_WINDOW_SECONDS:
            raise SettingsError(
                "MAX_BACKOFF_SECONDS",
                f"MAX_BACKOFF_SECONDS + SCHEDULE_SECONDS = "
                f"{self.max_backoff_seconds + self.schedule_seconds} s exceeds the "
                f"{FIFO_RESEND_WINDOW_SECONDS} s FIFO resend window",
            )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(name, "is required and not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be between {low} and {high}, got {value}")
    return value


def _bucket(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if problem := bucket_name_problem(value):
        raise SettingsError(name, f"{value[:80]!r}: {problem}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: frozenset[str]) -> str:
    value = env.get(name, "").strip().upper() or default
    if value not in allowed:
        raise SettingsError(name, f"must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value

"""Settings, parsed once from the environment into a frozen, validated object (docs/design.md §6).

A missing or malformed variable, or a combination that breaks the lease/deduplication relations of
docs/design.md §4.6, raises `SettingsError` naming the variable, at start-up rather than mid-run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from outbox.core.schema import is_fifo_queue

FIFO_DEDUPLICATION_SECONDS: Final = 300
"""SQS FIFO queues drop a message whose deduplication id was sent within the last 5 minutes."""
FIFO_RESEND_WINDOW_SECONDS: Final = 240
"""Resends on FIFO stay within 4 minutes of the first send: inside SQS's 5-minute dedup window."""
CLAIM_TO_FINALIZE_BUDGET_SECONDS: Final = 10
"""The longest a claim batch may take from claim to finalize; a lease must be at least 3x this."""
DYNAMODB_ITEM_LIMIT_BYTES: Final = 400_000
MAX_PAYLOAD_CEILING_BYTES: Final = 350_000
"""A payload above this could not fit a 400 KB message item together with its attributes."""
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

    @property
    def fifo(self) -> bool:
        return is_fifo_queue(self.queue_url)

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
                env, "MAX_PAYLOAD_BYTES", cls.max_payload_bytes, low=1, high=MAX_PAYLOAD_CEILING_BYTES
            ),
            retention_days=_integer(env, "RETENTION_DAYS", cls.retention_days, low=1, high=3650),
            log_level=_choice(env, "LOG_LEVEL", cls.log_level, LOG_LEVELS),
            payloads_table=env.get("PAYLOADS_TABLE", "").strip() or None,
        )
        settings.check_relations()
        return settings

    def check_relations(self) -> None:
        """docs/design.md §4.6: leases outlast a claim batch; FIFO resends stay inside the dedup window."""
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


def _choice(env: Mapping[str, str], name: str, default: str, allowed: frozenset[str]) -> str:
    value = env.get(name, "").strip().upper() or default
    if value not in allowed:
        raise SettingsError(name, f"must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value

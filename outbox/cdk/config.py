"""What one deployment is configured with: CDK context in, a checked `StackConfig` out.

The relay and ingest functions parse their environment with `outbox.settings.Settings.from_env`; the stack
builds that environment from the same object and runs the same parser on it at synth time, so a
combination the functions would refuse (docs/design.md §4.6: lease, schedule and backoff against the FIFO
deduplication window) fails `cdk synth` instead of every invocation after the deploy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from outbox.cdk.names import DEFAULT_ACCOUNT, DEFAULT_REGION, DEFAULT_STACK_NAME
from outbox.core.schema import FIFO_SUFFIX
from outbox.core.settings import Settings, SettingsError

PLACEHOLDER_MESSAGES_TABLE: Final = "synth-check-messages"
PLACEHOLDER_OUTBOX_TABLE: Final = "synth-check-outbox"
PLACEHOLDER_QUEUE_NAME: Final = "synth-check-queue"
PLACEHOLDER_PAYLOADS_BUCKET: Final = "synth-check-payloads"
"""Names stand in for the deploy-time table names, queue URL and bucket name while the settings are checked
(the stack always has a payload bucket, so `max_payload_bytes` may go above the item ceiling)."""

LAMBDA_MAX_TIMEOUT_SECONDS: Final = 900

CONTEXT_TO_VARIABLE: Final = {
    "shards": "OUTBOX_SHARDS",
    "max_attempts": "MAX_ATTEMPTS",
    "lease_seconds": "LEASE_SECONDS",
    "max_backoff_seconds": "MAX_BACKOFF_SECONDS",
    "max_payload_bytes": "MAX_PAYLOAD_BYTES",
    "retention_days": "RETENTION_DAYS",
    "log_level": "LOG_LEVEL",
}
"""Context keys passed through to a settings variable unchanged; `relay_schedule` (minutes) becomes
`SCHEDULE_SECONDS`."""

LOG_RETENTION_CHOICES: Final = frozenset({7, 14, 30, 90, 180, 365})

DEFAULT_API_RATE_LIMIT: Final = 100
"""Requests per second the ingest API's stage accepts (steady). The default relay drains several times
this (docs/design.md §10), so a stage at its limit does not grow a backlog; raise it with
`api_rate_limit` together with what drains it (shards, the doorbell's lanes) and the account's API
Gateway quota (10,000 requests per second per region unless raised)."""
DEFAULT_API_BURST_LIMIT: Final = 200


class RemovalPolicyName(StrEnum):
    RETAIN = "retain"
    DESTROY = "destroy"


class ConfigError(ValueError):
    """A context value is missing its type or breaks a settings rule; the message names the context key."""


@dataclass(frozen=True)
class StackConfig:
    account: str = DEFAULT_ACCOUNT
    region: str = DEFAULT_REGION
    stack_name: str = DEFAULT_STACK_NAME
    removal_policy: RemovalPolicyName = RemovalPolicyName.RETAIN
    alarm_topic_arn: str | None = None
    log_retention_days: int = 30
    oldest_pending_alarm_seconds: int = 600
    api_rate_limit: int = DEFAULT_API_RATE_LIMIT
    api_burst_limit: int = DEFAULT_API_BURST_LIMIT
    example_consumer: bool = False
    """Deploy the example consumer (`outbox.consumer.example`) on the queue: for trying the stack out; a
    real deployment wires its own consumers with `OutboxConstruct.add_consumer`."""
    settings: Settings = dataclasses.field(
        default_factory=lambda: _checked_settings(fifo=False, variables={}, source={})
    )

    @property
    def fifo(self) -> bool:
        return self.settings.fifo

    @property
    def relay_timeout_seconds(self) -> int:
        """A relay run never outlives its own leases nor overlaps the next tick (see ADR 0010).

        A claim made at any moment of a run holds its lease for `LEASE_SECONDS`; with the timeout at most
        that long, a run still working never holds an expired lease another run could take over.
        """
        return min(self.settings.lease_seconds, self.settings.schedule_seconds, LAMBDA_MAX_TIMEOUT_SECONDS)

    @classmethod
    def from_context(cls, context: Callable[[str], object], environ: Mapping[str, str]) -> StackConfig:
        """`context` is `app.node.try_get_context`; values come typed from cdk.json or as text from `-c`."""
        variables: dict[str, str] = {}
        source: dict[str, str] = {}
        for key, variable in CONTEXT_TO_VARIABLE.items():
            value = context(key)
            if value is not None:
                variables[variable] = _text(key, value)
                source[variable] = key
        schedule = context("relay_schedule")
        if schedule is not None:
            variables["SCHEDULE_SECONDS"] = str(60 * _integer("relay_schedule", schedule))
            source["SCHEDULE_SECONDS"] = "relay_schedule"
        removal = _text("removal_policy", context("removal_policy") or RemovalPolicyName.RETAIN).lower()
        if removal not in set(RemovalPolicyName):
            raise ConfigError(f"context removal_policy: must be 'retain' or 'destroy', got {removal!r}")
        retention = _integer("log_retention_days", context("log_retention_days") or 30)
        if retention not in LOG_RETENTION_CHOICES:
            choices = ", ".join(map(str, sorted(LOG_RETENTION_CHOICES)))
            raise ConfigError(f"context log_retention_days: must be one of {choices}, got {retention}")
        topic = context("alarm_topic_arn")
        return cls(
            account=environ.get("CDK_DEFAULT_ACCOUNT") or DEFAULT_ACCOUNT,
            region=_text("region", context("region") or _region_from(environ)),
            stack_name=_text("stack_name", context("stack_name") or DEFAULT_STACK_NAME),
            removal_policy=RemovalPolicyName(removal),
            alarm_topic_arn=_text("alarm_topic_arn", topic) if topic else None,
            log_retention_days=retention,
            oldest_pending_alarm_seconds=_integer(
                "oldest_pending_alarm_seconds", context("oldest_pending_alarm_seconds") or 600
            ),
            api_rate_limit=_positive("api_rate_limit", context("api_rate_limit"), DEFAULT_API_RATE_LIMIT),
            api_burst_limit=_positive("api_burst_limit", context("api_burst_limit"), DEFAULT_API_BURST_LIMIT),
            example_consumer=_boolean("example_consumer", context("example_consumer") or False),
            settings=_checked_settings(
                fifo=_boolean("fifo", context("fifo") or False), variables=variables, source=source
            ),
        )


def settings_environment(
    settings: Settings,
    *,
    messages_table: str,
    outbox_table: str,
    queue_url: str,
    payloads_table: str | None = None,
    payloads_bucket: str | None = None,
) -> dict[str, str]:
    """The Lambda environment: one variable per `Settings` field that has a value, named as
    `Settings.from_env` reads it. The resources' names are the deployed ones, passed here, never the
    placeholders the settings were checked with."""
    values = dataclasses.asdict(settings) | {
        "messages_table": messages_table,
        "outbox_table": outbox_table,
        "queue_url": queue_url,
        "payloads_table": payloads_table,
        "payloads_bucket": payloads_bucket,
    }
    return {name.upper(): str(value) for name, value in values.items() if value is not None}


def _checked_settings(*, fifo: bool, variables: Mapping[str, str], source: Mapping[str, str]) -> Settings:
    queue = f"https://sqs.{DEFAULT_REGION}.amazonaws.com/{DEFAULT_ACCOUNT}/{PLACEHOLDER_QUEUE_NAME}"
    environ = {
        "MESSAGES_TABLE": PLACEHOLDER_MESSAGES_TABLE,
        "OUTBOX_TABLE": PLACEHOLDER_OUTBOX_TABLE,
        "QUEUE_URL": queue + (FIFO_SUFFIX if fifo else ""),
        "PAYLOADS_BUCKET": PLACEHOLDER_PAYLOADS_BUCKET,
        **variables,
    }
    try:
        return Settings.from_env(environ)
    except SettingsError as exc:
        key = source.get(exc.variable)
        if key is not None:
            raise ConfigError(f"context {key}: {exc}") from exc
        given = ", ".join(f"{source[name]} ({name}={variables[name]})" for name in sorted(source))
        raise ConfigError(f"{exc} (fifo={str(fifo).lower()}; context: {given or 'defaults'})") from exc


def _region_from(environ: Mapping[str, str]) -> str:
    for name in ("CDK_DEFAULT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    return DEFAULT_REGION


def _text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"context {key}: expected text, got {value!r}")
    return str(value)


def _integer(key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ConfigError(f"context {key}: expected a whole number, got {value!r}")


def _positive(key: str, value: object, default: int) -> int:
    """A whole number of at least 1, or `default` when the key is absent (0 is refused, not defaulted)."""
    number = default if value is None else _integer(key, value)
    if number < 1:
        raise ConfigError(f"context {key}: must be at least 1, got {number}")
    return number


def _boolean(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ConfigError(f"context {key}: expected true or false, got {value!r}")

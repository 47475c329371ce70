"""Context in, checked configuration out: the settings rules run at synth time, naming the context key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from outbox.cdk.config import ConfigError, RemovalPolicyName, StackConfig


def _config(environ: dict[str, str] | None = None, **context: Any) -> StackConfig:
    return StackConfig.from_context(context.get, environ or {})


def test_defaults_need_no_account_or_region() -> None:
    config = _config()
    assert (config.account, config.region, config.stack_name) == ("123456789012", "us-east-1", "Outbox")
    assert config.removal_policy is RemovalPolicyName.RETAIN
    assert not config.fifo
    assert config.alarm_topic_arn is None
    assert (config.api_rate_limit, config.api_burst_limit) == (100, 200)


def test_account_and_region_from_the_cdk_environment() -> None:
    config = _config({"CDK_DEFAULT_ACCOUNT": "111122223333", "CDK_DEFAULT_REGION": "eu-central-1"})
    assert (config.account, config.region) == ("111122223333", "eu-central-1")
    assert _config({"CDK_DEFAULT_REGION": "eu-central-1"}, region="ap-south-1").region == "ap-south-1"


def test_context_text_values_are_parsed_like_cli_arguments() -> None:
    config = _config(fifo="true", shards="16", relay_schedule="2", max_attempts="5", removal_policy="DESTROY")
    assert config.fifo
    assert config.settings.queue_url.endswith(".fifo")
    assert (config.settings.outbox_shards, config.settings.schedule_seconds) == (16, 120)
    assert config.settings.max_attempts == 5
    assert config.removal_policy is RemovalPolicyName.DESTROY
    config = _config(api_rate_limit="2000", api_burst_limit="4000")
    assert (config.api_rate_limit, config.api_burst_limit) == (2000, 4000)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        # FIFO: a 5-minute period leaves resends outside the 5-minute deduplication window
        # (docs/design.md §4.6).
        (
            {"fifo": True, "relay_schedule": 5},
            "LEASE_SECONDS + SCHEDULE_SECONDS = 360 s exceeds the 240 s FIFO resend window "
            "(fifo=true; context: relay_schedule (SCHEDULE_SECONDS=300))",
        ),
        ({"lease_seconds": 10}, "context lease_seconds: LEASE_SECONDS: 10 is under"),
        ({"shards": 0}, "context shards: OUTBOX_SHARDS: must be between 1 and 1000"),
        ({"shards": "eight"}, "context shards: OUTBOX_SHARDS: must be an integer"),
        ({"relay_schedule": "soon"}, "context relay_schedule"),
        ({"fifo": "yes"}, "context fifo"),
        ({"removal_policy": "snapshot"}, "context removal_policy"),
        ({"log_retention_days": 10}, "context log_retention_days"),
        ({"api_rate_limit": 0}, "context api_rate_limit: must be at least 1, got 0"),
        ({"api_burst_limit": "lots"}, "context api_burst_limit: expected a whole number"),
    ],
)
def test_bad_context_fails_synth_naming_the_key(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(**context)


def test_a_standard_queue_may_run_the_relay_every_five_minutes() -> None:
    config = _config(relay_schedule=5)
    assert config.settings.schedule_seconds == 300
    assert config.relay_timeout_seconds == config.settings.lease_seconds == 60

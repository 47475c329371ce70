from __future__ import annotations

import pytest

from outbox.core.settings import S3_MAX_PAYLOAD_BYTES, Settings, SettingsError

BASE = {"MESSAGES_TABLE": "m", "OUTBOX_TABLE": "o", "QUEUE_URL": "http://localhost/123/q"}


def test_defaults_fill_everything_optional() -> None:
    settings = Settings.from_env(BASE)
    assert (settings.outbox_shards, settings.max_payload_bytes, settings.fifo) == (8, 262_144, False)


def test_fifo_is_recognised_by_the_queue_suffix() -> None:
    assert Settings.from_env({**BASE, "QUEUE_URL": "http://localhost/123/q.fifo"}).fifo


@pytest.mark.parametrize("missing", ["MESSAGES_TABLE", "OUTBOX_TABLE", "QUEUE_URL"])
def test_a_missing_variable_is_named(missing: str) -> None:
    env = {name: value for name, value in BASE.items() if name != missing}
    with pytest.raises(SettingsError, match=missing) as caught:
        Settings.from_env(env)
    assert caught.value.variable == missing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OUTBOX_SHARDS", "zero"),
        ("OUTBOX_SHARDS", "0"),
        ("MAX_ATTEMPTS", "-1"),
        ("MAX_PAYLOAD_BYTES", "500000"),
        ("SCHEDULE_SECONDS", "10"),
        ("LOG_LEVEL", "LOUD"),
        ("LEASE_SECONDS", "5"),
    ],
)
def test_a_bad_value_is_named(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**BASE, variable: value})


def test_fifo_lease_must_keep_resends_inside_the_dedup_window() -> None:
    fifo = {**BASE, "QUEUE_URL": "q.fifo"}
    with pytest.raises(SettingsError, match="LEASE_SECONDS"):
        Settings.from_env({**fifo, "LEASE_SECONDS": "200", "SCHEDULE_SECONDS": "60"})
    with pytest.raises(SettingsError, match="MAX_BACKOFF_SECONDS"):
        Settings.from_env({**fifo, "MAX_BACKOFF_SECONDS": "200"})
    # The same values are fine on a standard queue, which has no dedup window to respect.
    Settings.from_env({**BASE, "LEASE_SECONDS": "200", "MAX_BACKOFF_SECONDS": "200"})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        settings.outbox_shards = 3  # type: ignore[misc]


def test_max_payload_bytes_above_an_item_needs_the_bucket() -> None:
    with pytest.raises(
        SettingsError, match=r"MAX_PAYLOAD_BYTES: 350001 is above .* set PAYLOADS_BUCKET"
    ) as error:
        Settings.from_env({**BASE, "MAX_PAYLOAD_BYTES": "350001"})
    assert error.value.variable == "MAX_PAYLOAD_BYTES"
    settings = Settings.from_env({**BASE, "MAX_PAYLOAD_BYTES": "5000000", "PAYLOADS_BUCKET": "b-payloads"})
    assert (settings.max_payload_bytes, settings.payloads_bucket, settings.claim_check) == (
        S3_MAX_PAYLOAD_BYTES,
        "b-payloads",
        True,
    )
    with pytest.raises(SettingsError, match="MAX_PAYLOAD_BYTES: must be between 1 and 5000000"):
        Settings.from_env({**BASE, "MAX_PAYLOAD_BYTES": "5000001", "PAYLOADS_BUCKET": "b-payloads"})


@pytest.mark.parametrize("name", ["B", "a_b", "ab", "-ab", "a..b", "x" * 64])
def test_a_bucket_name_s3_would_refuse_is_named(name: str) -> None:
    with pytest.raises(SettingsError, match=r"PAYLOADS_BUCKET: .*S3 bucket name") as error:
        Settings.from_env({**BASE, "PAYLOADS_BUCKET": name})
    assert error.value.variable == "PAYLOADS_BUCKET"

from __future__ import annotations

import pytest

from outbox.core.settings import Settings, SettingsError

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

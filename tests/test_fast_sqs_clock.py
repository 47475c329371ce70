"""The cheap clock for moto's SQS gives moto's own answers."""

from __future__ import annotations

import datetime
import time

import moto.sqs.models as sqs_models
import pytest
from moto.core.utils import unix_time, unix_time_millis

from outbox.local.fast_sqs_clock import install_fast_sqs_clock, uninstall_fast_sqs_clock


def test_now_matches_moto_and_datetimes_go_to_moto() -> None:
    install_fast_sqs_clock()
    try:
        assert sqs_models.unix_time() == pytest.approx(unix_time(), abs=0.05)
        assert sqs_models.unix_time_millis() == pytest.approx(unix_time_millis(), abs=50)
        moment = datetime.datetime(2026, 1, 2, 3, 4, 5)
        assert sqs_models.unix_time_millis(moment) == unix_time_millis(moment)
        assert abs(sqs_models.unix_time() - time.time()) < 0.05
    finally:
        uninstall_fast_sqs_clock()
    assert sqs_models.unix_time is unix_time
    install_fast_sqs_clock()  # leave it as the session's embedded server expects

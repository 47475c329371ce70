"""moto's SQS with the cheap clock and without counting on send gives moto's own answers."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import boto3
import moto.sqs.models as sqs_models
import pytest
from moto import mock_aws
from moto.core.utils import unix_time, unix_time_millis
from moto.sqs.models import Queue

from outbox.local.fast_moto import mismatched
from outbox.local.fast_sqs import (
    _SEND_PATH,
    SEND_PATH_FINGERPRINTS,
    install_fast_sqs,
    sending,
    uninstall_fast_sqs,
)


@pytest.fixture
def reinstalled() -> Iterator[None]:
    """Leave the patch installed afterwards, as the session's embedded server expects."""
    try:
        yield
    finally:
        install_fast_sqs()


def test_now_matches_moto_and_datetimes_go_to_moto(reinstalled: None) -> None:
    install_fast_sqs()
    assert sqs_models.unix_time() == pytest.approx(unix_time(), abs=0.05)
    assert sqs_models.unix_time_millis() == pytest.approx(unix_time_millis(), abs=50)
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert sqs_models.unix_time_millis(moment) == unix_time_millis(moment)
    assert abs(sqs_models.unix_time() - time.time()) < 0.05
    uninstall_fast_sqs()
    assert sqs_models.unix_time is unix_time
    counts = Queue.approximate_number_of_messages
    assert counts.fget.__name__ == "approximate_number_of_messages"  # moto's own again


def test_the_reviewed_send_path_reads_no_count() -> None:
    assert mismatched(_SEND_PATH, SEND_PATH_FINGERPRINTS) == []


def test_counts_outside_a_send_are_moto_s_and_fifo_dedup_still_drops_a_resend(reinstalled: None) -> None:
    install_fast_sqs()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for round_ in range(2):  # the second round repeats every dedup id: SQS drops them
            entries = [
                {
                    "Id": f"{n}",
                    "MessageBody": f"m{n}",
                    "MessageGroupId": f"g{n}",
                    "MessageDeduplicationId": f"d{n}",
                }
                for n in range(5)
            ]
            assert len(sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]) == 5, round_
        sqs.send_message(QueueUrl=url, MessageBody="m5", MessageGroupId="g5", MessageDeduplicationId="d5")
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert counts["Attributes"]["ApproximateNumberOfMessages"] == "6"
        queue = sqs_models.sqs_backends["123456789012"]["eu-west-1"].get_queue("q.fifo")
        with sending():
            assert queue.approximate_number_of_messages == 0
        assert queue.approximate_number_of_messages == 6

"""Chaos consumers (issue #16): the consumer helper (`outbox.consumer.OutboxConsumer`) under the faults a
consumer meets, with a side effect of its own whose count the checker reads.

Each consumer polls the queue as an SQS event source mapping would (a short visibility timeout, batches of
up to 10, the Lambda event shape), runs the helper on every record and deletes what it acknowledged. Its
work returns one DynamoDB action, `ADD applied 1` on the message's item in an *effects* table (the demo's
side-effect table and action, `outbox.local.demo_consumer`), which the
helper commits in the same transaction as `COMPLETED`. A message applied twice would show `applied = 2`;
one never applied, `0`. Faults, drawn per delivery and at most `MAX_FAULTS_PER_MESSAGE` per message (so
that no message reaches the dead-letter queue through faults alone):

* **crash** between the claim and the completion: the process dies (a `BaseException` the helper does not
  catch): no give-back, no delete; the claim expires and the redelivery takes the message over;
* **timeout**: the work outlasts the claim and the visibility timeout: another consumer takes the message
  over while the first one still runs; the first one's completion must be refused (`ClaimLost`);
* **failure**: the work raises; the helper gives the message back (`QUEUED`, `last_error`) and SQS
  delivers it again;
* **lost delete**: the message was completed but the delete never reached SQS: it is delivered again and
  must be acknowledged as a duplicate without running the work.

Every receive is logged by SQS message id, so the checker counts what the relay sent (one SQS message id per
send) apart from what SQS redelivered.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from outbox.consumer import Consumed, OutboxConsumer
from outbox.consumer.processor import ClaimLost, NotClaimed
from outbox.local.consumer import lambda_sqs_event
from outbox.local.demo_consumer import apply_action

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from outbox.consumer.processor import ConsumedMessage

PROCESSING_SECONDS: Final = 5
"""The helper's claim: short, so crashed and timed-out claims run out quickly, but longer than one
consumption takes on a moto server that every thread of the run shares."""
VISIBILITY_SECONDS: Final = 6
"""The receive's visibility timeout: longer than the claim (ADR 0019), so the redelivery of a crashed
consumer's message finds its claim run out and takes it over."""
MAX_FAULTS_PER_MESSAGE: Final = 2
"""Faults injected into one message's deliveries at most: with the queue's `maxReceiveCount` of 5, faults
alone never move a message to the dead-letter queue."""


class SimulatedCrash(BaseException):
    """The consumer process dies mid-message: not an `Exception`, so the helper cannot give it back."""


@dataclass(frozen=True)
class ConsumerFaults:
    crash: float = 0.05
    timeout: float = 0.03
    fail: float = 0.05
    lost_delete: float = 0.08

    def draw(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for name in ("crash", "timeout", "fail", "lost_delete"):
            share: float = getattr(self, name)
            if roll < share:
                return name
            roll -= share
        return None


@dataclass
class ConsumerLog:
    """What every consumer saw, shared (under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    first_receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By SQS message id, in order of first receipt: one entry per send of the relay."""
    receives: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """completed, duplicate, not_claimed, claim_lost, failed, crashed, timed_out, lost_delete."""
    faults_by_message: Counter[str] = field(default_factory=Counter)

    def received(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.receives += 1
            self.first_receipts.setdefault(message["MessageId"], message)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    def fault_allowed(self, message_id: str) -> bool:
        with self.lock:
            if self.faults_by_message[message_id] >= MAX_FAULTS_PER_MESSAGE:
                return False
            self.faults_by_message[message_id] += 1
            return True


class ChaosConsumer:
    """One consumer lane: receive, run the helper with faults, delete what it acknowledged."""

    def __init__(
        self,
        *,
        sqs: Any,
        dynamodb: Any,
        queue_url: str,
        messages_table: str,
        effects_table: str,
        faults: ConsumerFaults,
        log: ConsumerLog,
        rng: random.Random,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._effects_table = effects_table
        self._faults = faults
        self._log = log
        self._rng = rng
        self._helper = OutboxConsumer(
            dynamodb, messages_table=messages_table, processing_seconds=PROCESSING_SECONDS
        )
        self._queue_arn = "arn:aws:sqs:us-east-1:123456789012:" + queue_url.rsplit("/", 1)[-1]

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:  # an AWS error of the poll itself: the next poll tries again
                self._log.count("poll_errors")
                time.sleep(0.2)

    def poll_once(self) -> int:
        """One receive and its records; how many it received."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        records = lambda_sqs_event(messages, self._queue_arn, "us-east-1")["Records"]
        for message, record in zip(messages, records, strict=True):
            self._log.received(message)
            self._one(message, SQSRecord(record))
        return len(messages)

    def _one(self, message: dict[str, Any], record: SQSRecord) -> None:
        message_id = message.get("MessageAttributes", {}).get("message_id", {}).get("StringValue", "")
        fault = self._faults.draw(self._rng)
        if fault is not None and not self._log.fault_allowed(message_id):
            fault = None
        try:
            outcome = self._helper.consume(record, lambda consumed: self._work(consumed, fault))
        except SimulatedCrash:
            self._log.count("crashed")  # no give-back, no delete: the claim runs out
            return
        except NotClaimed:
            self._log.count("not_claimed")
            return
        except ClaimLost:
            self._log.count("claim_lost")  # timed out and taken over: the other one's completion counts
            return
        except Exception:
            self._log.count("failed")  # given back by the helper; SQS delivers it again
            return
        self._log.count(outcome.value if outcome is Consumed.COMPLETED else "duplicate")
        if fault == "lost_delete":
            self._log.count("lost_delete")
            return
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _work(self, consumed: ConsumedMessage, fault: str | None) -> list[TransactWriteItemTypeDef]:
        if fault == "crash":
            raise SimulatedCrash
        if fault == "fail":
            raise RuntimeError("chaos: the consumer's work failed")
        if fault == "timeout":
            self._log.count("timed_out")
            time.sleep(VISIBILITY_SECONDS + 1)  # redelivered and taken over meanwhile
        return [apply_action(self._effects_table, consumed.message_id)]

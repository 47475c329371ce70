"""Sending a claim batch to SQS and classifying every entry's outcome (docs/design.md §4.3).

`SendMessageBatch` with at most 10 entries and 1 MiB; on FIFO at most one entry per group in a batch and a
group's next entry only after its previous one was accepted, so a failure can never reorder a group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from outbox.core.sqs_errors import sqs_error_code
from relay.entries import Entry
from relay.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageBatchRequestEntryTypeDef

MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 1_048_576
MESSAGE_ID_ATTRIBUTE: Final = "message_id"
_SPLIT_CODES: Final = frozenset(
    {
        # Modeled names, compared through `sqs_error_code`: real SQS sends the batch codes prefixed
        # (`AWS.SimpleQueueService.BatchRequestTooLong`), moto and fakes may not.
        # The batch as a whole is malformed: a relay bug, never the messages' fault.
        "BatchRequestTooLong",
        "InvalidBatchEntryId",
        "BatchEntryIdsNotDistinct",
        "TooManyEntriesInBatchRequest",
        "EmptyBatchRequest",
        # One message is refused and takes the call down with it: split to find it.
        "InvalidMessageContents",
        "InvalidParameterValue",
        "MessageTooLong",
        "InvalidAttributeName",
        "InvalidAttributeValue",
    }
)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    """SQS refused the entry for good (`SenderFault=true`, or alone in a refused call): poison it."""
    FAILED = "failed"
    """Not queued (`SenderFault=false` until retries ran out): roll back, counting an attempt."""
    UNKNOWN = "unknown"
    """The call failed as a whole (timeout, 5xx, reset): SQS may have queued it. Roll back, not counted."""
    HELD_BACK = "held_back"
    """Not sent: to keep its FIFO group in order behind an entry that was not accepted, or because the
    batch's lease had too little time left for another call (ADR 0005)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    entry: Entry
    body: str
    """The payload, or for a payload in S3 the extended client's pointer to it (ADR 0023)."""
    attributes: dict[str, str]
    """The caller's String attributes; `message_id` is added beside them when sent."""
    group_id: str | None
    trace_header: str | None = None
    """Sent as the `AWSTraceHeader` system attribute (ADR 0021), which SQS does not count in the size."""
    extra_attributes: Mapping[str, MessageAttributeValueTypeDef] = field(default_factory=dict)
    """Attributes of the relay's own, as SQS `MessageAttributes`: a pointer's `ExtendedPayloadSize`
    (`outbox.data.claim_check.pointer_attributes`)."""

    def size(self) -> int:
        """The bytes SQS counts: the body, and each attribute's name, data type and value."""
        attributes = {MESSAGE_ID_ATTRIBUTE: self.entry.message_id, **self.attributes}
        return (
            len(self.body.encode("utf-8"))
            + sum(
                len(name) + len("String") + len(value.encode("utf-8")) for name, value in attributes.items()
            )
            + sum(
                len(name) + len(value["DataType"]) + len(value.get("StringValue", "").encode("utf-8"))
                for name, value in self.extra_attributes.items()
            )
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    outgoing: Outgoing
    outcome: Outcome
    sqs_message_id: str | None = None
    error: str | None = None
    maybe_sent: bool = False
    """SQS accepted it or may have (a call of it failed as a whole): a later send is a resend."""


@dataclass
class _BatchSend:
    """One packed batch across its attempts: the entries decided so far, those still to send, and what
    the last attempt left behind, for the outcome of those never accepted."""

    batch: list[Outgoing]
    remaining: list[Outgoing] = field(init=False)
    decided: dict[int, SendResult] = field(default_factory=dict)
    """Results by `id()` of the entry: accepted, or rejected for good."""
    maybe_sent: set[int] = field(default_factory=set)
    """Entries of a call that failed as a whole: SQS may have queued them."""
    whole_call_failed: bool = False
    last_error: str = ""
    split_code: str | None = None
    """Set when SQS refused the call as malformed: the rest is sent in halves instead of retried."""
    window_closed: bool = False

    def __post_init__(self) -> None:
        self.remaining = list(self.batch)

    def call_failed(self) -> None:
        self.whole_call_failed = True
        self.maybe_sent.update(id(item) for item in self.remaining)

    def results(self) -> list[SendResult]:
        """Every entry's result, in batch order; the undecided ones failed (or are unknown, when the
        last call failed as a whole)."""
        outcome = Outcome.UNKNOWN if self.whole_call_failed else Outcome.FAILED
        for item in self.remaining:
            self.decided[id(item)] = SendResult(
                item, outcome, error=self.last_error, maybe_sent=id(item) in self.maybe_sent
            )
        return [self.decided[id(item)] for item in self.batch]


@dataclass
class SendStats:
    retries: int = 0
    splits: int = 0
    calls: int = 0
    resent_after_unknown: int = 0
    """Entries sent again after a whole call failed: SQS may now hold them twice."""
    out_of_time: int = 0
    """Entries not sent (held back) because the batch's send window had closed."""


class Sender:
    def __init__(self, client: SQSClient, queue_url: str, *, retry_policy: RetryPolicy, fifo: bool) -> None:
        self._client = client
        self._queue_url = queue_url
        self._retry_policy = retry_policy
        self._fifo = fifo

    def send(
        self, outgoing: Sequence[Outgoing], *, deadline: Callable[[], float]
    ) -> tuple[list[SendResult], SendStats]:
        """Send everything that order allows. `deadline()` is the seconds left in which a call may still
        start (the lease minus the longest a call takes, or the invocation's deadline); no call, first or
        retry, starts at or past it, and what was never sent comes back `HELD_BACK`."""
        stats = SendStats()
        if not self._fifo:
            return self._send_packed(list(outgoing), deadline, stats), stats
        results: list[SendResult] = []
        groups: OrderedDict[str, list[Outgoing]] = OrderedDict()
        for item in outgoing:
            groups.setdefault(item.group_id or "", []).append(item)
        while groups:
            heads = [queue[0] for queue in groups.values()]
            round_results = self._send_packed(heads, deadline, stats)
            results.extend(round_results)
            for result in round_results:
                group = result.outgoing.group_id or ""
                queue = groups[group]
                queue.pop(0)
                if result.outcome is not Outcome.ACCEPTED:
                    results.extend(SendResult(rest, Outcome.HELD_BACK) for rest in queue)
                    queue.clear()
                if not queue:
                    del groups[group]
        return results, stats

    def _send_packed(
        self, outgoing: list[Outgoing], deadline: Callable[[], float], stats: SendStats
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for batch in _pack(outgoing):
            results.extend(self._send_batch(batch, deadline, stats))
        return results

    def _send_batch(
        self, batch: list[Outgoing], deadline: Callable[[], float], stats: SendStats
    ) -> list[SendResult]:
        if deadline() <= 0:
            stats.out_of_time += len(batch)
            return [SendResult(item, Outcome.HELD_BACK, error="send window closed") for item in batch]
        send = _BatchSend(batch)
        retrying = self._retry_policy.retrying(
            budget_seconds=deadline(),
            retry_on=(BotoCoreError, ClientError),
            retry_while=bool,
            before_retry=partial(self._before_retry, send, deadline, stats),
        )
        with suppress(BotoCoreError, ClientError):  # failed as a whole to the end: `send` holds the outcome
            retrying(self._attempt, send, stats)
        if send.split_code is not None:
            return [*send.decided.values(), *self._split(send.remaining, send.split_code, deadline, stats)]
        return send.results()

    def _before_retry(self, send: _BatchSend, deadline: Callable[[], float], stats: SendStats) -> None:
        """tenacity's hook before each retry of a batch, once its wait is over: the lease's send window is
        checked again (no call may start past it), and the retry is counted."""
        if deadline() <= 0:
            send.window_closed = True  # no time for a retry: the entries keep the last attempt's outcome
            return
        stats.retries += 1
        if send.whole_call_failed:
            stats.resent_after_unknown += len(send.remaining)

    def _attempt(self, send: _BatchSend, stats: SendStats) -> bool:
        """One `SendMessageBatch` of the entries still undecided. True when some failed without the
        sender's fault (`SenderFault=false`) and are worth another attempt; a call that failed as a whole
        raises for tenacity to retry."""
        if send.window_closed:
            return False
        send.whole_call_failed = False
        try:
            response = self._call(send.remaining, stats)
        except ClientError as exc:
            code = sqs_error_code(exc)
            send.last_error = f"SendMessageBatch: {code}"
            if code in _SPLIT_CODES:
                send.split_code = code
                return False
            send.call_failed()
            raise
        except BotoCoreError as exc:
            send.last_error = f"SendMessageBatch: {type(exc).__name__}"
            send.call_failed()
            raise
        send.remaining, entry_error = _classify(response, send.remaining, send.decided)
        if send.remaining:
            send.last_error = entry_error
        return bool(send.remaining)

    def _split(
        self, batch: list[Outgoing], code: str, deadline: Callable[[], float], stats: SendStats
    ) -> list[SendResult]:
        if len(batch) == 1:
            return [
                SendResult(batch[0], Outcome.REJECTED, error=f"SendMessageBatch refused the message: {code}")
            ]
        stats.splits += 1
        middle = len(batch) // 2
        return [
            *self._send_batch(batch[:middle], deadline, stats),
            *self._send_batch(batch[middle:], deadline, stats),
        ]

    def _call(self, batch: list[Outgoing], stats: SendStats) -> Any:
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for position, item in enumerate(batch):
            attributes: dict[str, Any] = {
                MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": item.entry.message_id},
                **{
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in item.attributes.items()
                },
                **item.extra_attributes,
            }
            entry: SendMessageBatchRequestEntryTypeDef = {
                "Id": str(position),
                "MessageBody": item.body,
                "MessageAttributes": attributes,
            }
            if item.trace_header is not None:
                entry["MessageSystemAttributes"] = {
                    "AWSTraceHeader": {"DataType": "String", "StringValue": item.trace_header}
                }
            if self._fifo:
                entry["MessageGroupId"] = item.group_id or item.entry.message_id
                entry["MessageDeduplicationId"] = item.entry.message_id
            entries.append(entry)
        stats.calls += 1
        return self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)


def _classify(
    response: Any, sent: list[Outgoing], decided: dict[int, SendResult]
) -> tuple[list[Outgoing], str]:
    """Record each entry's per-entry result; return the entries to try again (`SenderFault=false`)
    and the last of their errors."""
    for success in response.get("Successful", []):
        item = sent[int(success["Id"])]
        decided[id(item)] = SendResult(item, Outcome.ACCEPTED, success["MessageId"], maybe_sent=True)
    again: list[Outgoing] = []
    last_error = ""
    for failure in response.get("Failed", []):
        item = sent[int(failure["Id"])]
        error = f"{failure.get('Code', 'Failed')}: {failure.get('Message', '')}".strip()
        if failure.get("SenderFault"):
            decided[id(item)] = SendResult(item, Outcome.REJECTED, error=error)
        else:
            again.append(item)
            last_error = error
    return again, last_error


def _pack(outgoing: list[Outgoing]) -> list[list[Outgoing]]:
    """Consecutive batches of at most 10 entries and 1 MiB, in order."""
    batches: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    size = 0
    for item in outgoing:
        item_size = item.size()
        if current and (len(current) == MAX_BATCH_ENTRIES or size + item_size > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches

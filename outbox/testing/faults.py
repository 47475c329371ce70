"""Faults injected at the botocore HTTP layer, so botocore's own retries see them as they would on AWS.

A `before-send` hook answers in place of the server: throttling and 5xx as real error responses, a
connection reset as a connection error, and a *lost response* by sending the request for real and then
raising a read timeout, so the server applied it and the caller does not know.

Per-entry failures of `SendMessageBatch` are made up on the client, so on a FIFO queue they need one rule
SQS itself keeps: a resend of a deduplication id that SQS accepted less than 5 minutes ago is accepted
again (and dropped), never failed. A `DedupWindow` shared by every injector of a scenario remembers which
ids reached the queue, and an entry fault for a batch holding one of them is not injected.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from outbox.core.sqs_errors import query_error_code


class FaultKind(StrEnum):
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    CONNECTION_RESET = "connection_reset"
    LOST_RESPONSE = "lost_response"
    TRANSACTION_CONFLICT = "transaction_conflict"
    """DynamoDB only: a `TransactWriteItems` cancelled with `TransactionConflict` on its first action."""
    ENTRY_FAILURE = "entry_failure"
    """SQS only: every entry of a `SendMessageBatch` fails with `SenderFault=false` (not queued)."""
    ENTRY_REJECTED = "entry_rejected"
    """SQS only: every entry of a `SendMessageBatch` is refused for good (`SenderFault=true`)."""
    BATCH_TOO_LONG = "batch_too_long"
    """SQS only: the whole `SendMessageBatch` is refused with `BatchRequestTooLong`, spelled as real SQS
    spells it (`AWS.SimpleQueueService.BatchRequestTooLong`). With `when=<message id>` and `times=None`, a
    message too big for any batch: every batch holding it is refused, down to the message alone."""


_ENTRY_FAULTS: Final = frozenset({FaultKind.ENTRY_FAILURE, FaultKind.ENTRY_REJECTED})
SQS_DEDUPLICATION_SECONDS: Final = 300.0


class DedupWindow(Protocol):
    """Where the FIFO deduplication ids that reached the queue are remembered, shared by every injector of
    a scenario (`chaos.ledger.DedupLedger` keeps them in SQLite, so relays in other processes share it)."""

    def record(self, ids: Iterable[str]) -> None: ...

    def any_within_window(self, ids: Iterable[str]) -> bool: ...

    def note_spared(self) -> None: ...


_THROTTLE_CODES = {"dynamodb": "ThrottlingException", "sqs": "RequestThrottled"}
_ERROR_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}


class BufferedBody:
    """A response body botocore can stream, made from bytes in hand (an answer a hook makes up)."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._payload


@dataclass
class _Rule:
    kind: FaultKind
    remaining: int | None
    rate: float
    when: str | None


@dataclass
class FaultInjector:
    """Install on one client; add rules per operation (`"TransactWriteItems"`); read `injected` after."""

    client: Any
    seed: int | None = None
    dedup_ledger: DedupWindow | None = None
    """FIFO queues: spare entry faults on resends SQS would accept (see the module's docstring)."""
    injected: Counter[tuple[str, FaultKind]] = field(default_factory=Counter)
    _rules: dict[str, list[_Rule]] = field(default_factory=dict)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if _moto_in_process_active():
            raise RuntimeError(
                "FaultInjector needs a client that talks HTTP (a moto server): in-process moto applies every "
                "request whatever a before-send hook answers"
            )
        self._random = random.Random(self.seed)  # noqa: S311 - fault schedule, not security
        self._service = self.client.meta.service_model.service_id.hyphenize()
        self.client.meta.events.register(f"before-send.{self._service}", self._before_send)

    def add(
        self,
        operation: str,
        kind: FaultKind,
        *,
        times: int | None = 1,
        rate: float = 1.0,
        when: str | None = None,
    ) -> FaultInjector:
        """Fault the next `times` calls of `operation` (None: every call), each with probability `rate`;
        with `when`, only calls whose request body contains that text (a message id, `"Delete"`)."""
        self._rules.setdefault(operation, []).append(_Rule(kind, times, rate, when))
        return self

    def clear(self) -> None:
        self._rules.clear()

    def remove(self) -> None:
        self.client.meta.events.unregister(f"before-send.{self._service}", self._before_send)

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        operation = _operation_of(request)
        dedup_ids = self._dedup_ids(operation, request)
        for rule in self._rules.get(operation, []):
            if rule.remaining == 0 or (rule.when is not None and rule.when not in _body_text(request)):
                continue
            if self._random.random() >= rule.rate:
                continue
            if rule.kind in _ENTRY_FAULTS and self._accepted_lately(dedup_ids):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            self.injected[(operation, rule.kind)] += 1
            if rule.kind is FaultKind.LOST_RESPONSE and self.dedup_ledger:
                self.dedup_ledger.record(dedup_ids)  # recorded before it is sent: never late
            return self._apply(rule.kind, request)
        if self.dedup_ledger:
            self.dedup_ledger.record(dedup_ids)
        return None

    def _accepted_lately(self, dedup_ids: list[str]) -> bool:
        """SQS accepted one of these ids within 5 minutes, so it would accept the batch: fault spared."""
        if self.dedup_ledger is None or not self.dedup_ledger.any_within_window(dedup_ids):
            return False
        self.dedup_ledger.note_spared()
        return True

    def _dedup_ids(self, operation: str, request: AWSPreparedRequest) -> list[str]:
        if self.dedup_ledger is None or operation != "SendMessageBatch":
            return []
        entries = json.loads(_body_text(request) or "{}").get("Entries", [])
        return [entry["MessageDeduplicationId"] for entry in entries if "MessageDeduplicationId" in entry]

    def _apply(self, kind: FaultKind, request: AWSPreparedRequest) -> AWSResponse:
        if kind is FaultKind.THROTTLE:
            return self._error_response(request, 400, _THROTTLE_CODES[self._service], "Rate exceeded")
        if kind is FaultKind.SERVER_ERROR:
            return self._error_response(request, 500, "InternalServerError", "injected 500")
        if kind is FaultKind.BATCH_TOO_LONG:
            return self._error_response(
                request, 400, "BatchRequestTooLong", "Batch requests cannot be longer than 1048576 bytes."
            )
        if kind is FaultKind.TRANSACTION_CONFLICT:
            return self._conflict_response(request)
        if kind in {FaultKind.ENTRY_FAILURE, FaultKind.ENTRY_REJECTED}:
            return self._failed_entries_response(request, sender_fault=kind is FaultKind.ENTRY_REJECTED)
        if kind is FaultKind.CONNECTION_RESET:
            raise ConnectionClosedError(endpoint_url=request.url)
        self.client._endpoint.http_session.send(request)  # applied on the server ...
        raise ReadTimeoutError(endpoint_url=request.url)  # ... and the answer never arrives

    def _error_response(
        self, request: AWSPreparedRequest, status: int, code: str, message: str
    ) -> AWSResponse:
        """An error as the service sends it: the modeled name in `__type`; for SQS, which keeps its old
        query-protocol codes, also `x-amzn-query-error` with the code as SQS spells it, which botocore
        then reports as `Error.Code` (`AWS.SimpleQueueService.BatchRequestTooLong`)."""
        body = json.dumps({"__type": _ERROR_PREFIX[self._service] + code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        if self._service == "sqs":
            fault = "Receiver" if status >= 500 else "Sender"
            headers["x-amzn-query-error"] = f"{query_error_code(code)};{fault}"
        return AWSResponse(request.url, status, HTTPHeaders.from_dict(headers), BufferedBody(body))

    def _failed_entries_response(self, request: AWSPreparedRequest, *, sender_fault: bool) -> AWSResponse:
        entries = json.loads(_body_text(request) or "{}").get("Entries", [])
        code = "InvalidParameterValue" if sender_fault else "InternalError"
        failed = [
            {
                "Id": entry["Id"],
                "SenderFault": sender_fault,
                "Code": code,
                "Message": "injected entry failure",
            }
            for entry in entries
        ]
        body = json.dumps({"Successful": [], "Failed": failed}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, 200, HTTPHeaders.from_dict(headers), BufferedBody(body))

    def _conflict_response(self, request: AWSPreparedRequest) -> AWSResponse:
        body = request.body
        raw_items = json.loads(body if isinstance(body, str | bytes) else b"{}").get("TransactItems", [])
        reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(raw_items) - 1)
        codes = ", ".join(reason["Code"] for reason in reasons)
        payload = {
            "__type": _ERROR_PREFIX["dynamodb"] + "TransactionCanceledException",
            "message": f"Transaction cancelled, please refer cancellation reasons for specific reasons "
            f"[{codes}]",
            "CancellationReasons": reasons,
        }
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(
            request.url, 400, HTTPHeaders.from_dict(headers), BufferedBody(json.dumps(payload).encode())
        )


def _body_text(request: AWSPreparedRequest) -> str:
    body = request.body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


def _moto_in_process_active() -> bool:
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))


def _operation_of(request: AWSPreparedRequest) -> str:
    target = request.headers.get("X-Amz-Target", b"")
    text = target.decode() if isinstance(target, bytes) else str(target)
    return text.rsplit(".", 1)[-1]


class Crash(BaseException):
    """Raised to kill a run at a chosen point. A BaseException, so no `except Exception` swallows it."""


@dataclass
class CrashAfter:
    """Kill the caller right after a call of `operation` succeeded on the server (`when`: only calls whose
    parameters, as text, contain it). Works in-process and over HTTP: it acts after the call."""

    client: Any
    operation: str
    when: str | None = None
    times: int = 1
    crashed: int = 0
    _last_params: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        service = self.client.meta.service_model.service_id.hyphenize()
        self.client.meta.events.register(f"before-parameter-build.{service}.{self.operation}", self._remember)
        self.client.meta.events.register(f"after-call.{service}.{self.operation}", self._after)

    def _remember(self, params: dict[str, Any], **_: Any) -> None:
        self._last_params[threading.get_ident()] = json.dumps(params, default=str)

    def _after(self, **_: Any) -> None:
        params = self._last_params.pop(threading.get_ident(), "")
        if self.crashed < self.times and (self.when is None or self.when in params):
            self.crashed += 1
            raise Crash(f"crash after {self.operation}")

"""DynamoDB's `ClientRequestToken` memory, which moto does not keep, as a hook on a client (ADR 0003).

AWS documents for `TransactWriteItems`: a token makes the call idempotent, "multiple identical calls have
the same effect as one single call"; a token "is valid for 10 minutes after the first request that uses it
is completed"; the same token with other parameters within those 10 minutes is refused with
`IdempotentParameterMismatchException`. It does not say that a first use that was *cancelled* lets a later
identical call run. `TokenMemory` takes the reading that the documentation leaves open and that would hurt
most: the first completed outcome of a token, success or cancellation, is the answer to every identical call
with it for 10 minutes. Code that passes against it does not depend on DynamoDB re-running a cancelled
token.

Install it on a client that talks to a moto server, after any `FaultInjector` on the same client: a fault
on the wire comes first, and a cancellation the injector makes up is remembered like a real one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders

from outbox.testing.faults import BufferedBody

TOKEN_WINDOW_SECONDS: Final = 600.0
_OPERATION: Final = "TransactWriteItems"
_CANCELLED: Final = "TransactionCanceledException"


@dataclass(frozen=True)
class _Outcome:
    fingerprint: str
    status: int
    headers: dict[str, str]
    body: bytes
    completed_at: float

    @property
    def kind(self) -> str:
        return "success" if self.status == 200 else "cancelled"


@dataclass
class TokenMemory:
    """Remembers each `TransactWriteItems` token's first completed outcome (a success or a
    `TransactionCanceledException`) and answers identical calls with it for `window_seconds`; read
    `replayed` (by outcome: "success", "cancelled") and `mismatched` after."""

    client: Any
    window_seconds: float = TOKEN_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    replayed: Counter[str] = field(default_factory=Counter)
    mismatched: int = 0
    _outcomes: dict[str, _Outcome] = field(default_factory=dict)
    _in_flight: dict[int, tuple[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._service = self.client.meta.service_model.service_id.hyphenize()
        self.client.meta.events.register(f"before-send.{self._service}.{_OPERATION}", self._before_send)
        self.client.meta.events.register(
            f"response-received.{self._service}.{_OPERATION}", self._response_received
        )

    def remove(self) -> None:
        self.client.meta.events.unregister(f"before-send.{self._service}.{_OPERATION}", self._before_send)
        self.client.meta.events.unregister(
            f"response-received.{self._service}.{_OPERATION}", self._response_received
        )

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        token, fingerprint = _token_and_fingerprint(request)
        if token is None:
            return None
        with self._lock:
            outcome = self._outcomes.get(token)
            if outcome is not None and self.clock() - outcome.completed_at > self.window_seconds:
                del self._outcomes[token]
                outcome = None
            if outcome is None:
                self._in_flight[threading.get_ident()] = (token, fingerprint)
                return None
            self._in_flight.pop(threading.get_ident(), None)
            if outcome.fingerprint != fingerprint:
                self.mismatched += 1
                return _mismatch_response(request)
            self.replayed[outcome.kind] += 1
            return AWSResponse(
                request.url,
                outcome.status,
                HTTPHeaders.from_dict(outcome.headers),
                BufferedBody(outcome.body),
            )

    def _response_received(
        self, response_dict: dict[str, Any] | None, parsed_response: dict[str, Any] | None, **_: Any
    ) -> None:
        with self._lock:
            sent = self._in_flight.pop(threading.get_ident(), None)
            if sent is None or response_dict is None or parsed_response is None:
                return  # answered from memory, or no answer at all (a lost response): nothing completed
            status = int(response_dict["status_code"])
            if status != 200 and parsed_response.get("Error", {}).get("Code") != _CANCELLED:
                return  # throttled, 5xx, refused: the transaction did not run to an outcome
            token, fingerprint = sent
            self._outcomes.setdefault(
                token,
                _Outcome(
                    fingerprint, status, dict(response_dict["headers"]), response_dict["body"], self.clock()
                ),
            )


def _token_and_fingerprint(request: AWSPreparedRequest) -> tuple[str | None, str]:
    body = request.body
    params = json.loads(body if isinstance(body, str | bytes) else b"{}")
    token = params.pop("ClientRequestToken", None)
    fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return token, fingerprint


def _mismatch_response(request: AWSPreparedRequest) -> AWSResponse:
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
            "message": "Request token was used with different parameters",
        }
    ).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(request.url, 400, HTTPHeaders.from_dict(headers), BufferedBody(body))

"""Simulated crashes of in-process relays, and the fault plan for every faulted client.

A `KillSwitch` stands in for a process dying: once tripped (at a random moment by the scenario's killer
thread, or right after a chosen call succeeded on the server), every thread of that relay raises `Crash`
at its next AWS call boundary, before the call leaves. Nothing after the kill point reaches the server,
which is what a SIGKILL does to a process; what it cannot imitate is a kill *inside* a call (between the
request and the response), which the injected lost responses cover instead.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from chaos.ledger import DedupLedger
from outbox.testing.faults import Crash, FaultInjector, FaultKind
from relay.core import RelayConfig
from relay.retry import RetryPolicy

RELAY_RETRIES: Final = RetryPolicy(attempts=4, initial_wait_seconds=0.02, max_wait_seconds=0.2)
RELAY_CONFIG: Final = RelayConfig(parallel_shards=2, batch_size=20)
"""Every faulted relay, in-process or a process of its own, runs with these."""

RELAY_DYNAMODB_FAULTS: Final[dict[str, list[tuple[FaultKind, float]]]] = {
    # Claims, finalizes and poison go through TransactWriteItems: every fault kind, lost responses most.
    "TransactWriteItems": [
        (FaultKind.LOST_RESPONSE, 0.35),
        (FaultKind.TRANSACTION_CONFLICT, 0.2),
        (FaultKind.THROTTLE, 0.15),
        (FaultKind.SERVER_ERROR, 0.15),
        (FaultKind.CONNECTION_RESET, 0.15),
    ],
    "Query": [(FaultKind.THROTTLE, 0.5), (FaultKind.SERVER_ERROR, 0.25), (FaultKind.CONNECTION_RESET, 0.25)],
    "BatchGetItem": [(FaultKind.THROTTLE, 0.5), (FaultKind.SERVER_ERROR, 0.5)],
    "UpdateItem": [(FaultKind.LOST_RESPONSE, 0.5), (FaultKind.SERVER_ERROR, 0.5)],
    "DeleteItem": [(FaultKind.LOST_RESPONSE, 0.5), (FaultKind.THROTTLE, 0.5)],
}
RELAY_SQS_FAULTS: Final[dict[str, list[tuple[FaultKind, float]]]] = {
    "SendMessageBatch": [
        (FaultKind.LOST_RESPONSE, 0.3),
        (FaultKind.ENTRY_FAILURE, 0.2),
        (FaultKind.SERVER_ERROR, 0.15),
        (FaultKind.THROTTLE, 0.15),
        (FaultKind.CONNECTION_RESET, 0.1),
        (FaultKind.ENTRY_REJECTED, 0.1),
    ],
}
INGEST_DYNAMODB_FAULTS: Final[dict[str, list[tuple[FaultKind, float]]]] = {
    "TransactWriteItems": [
        (FaultKind.LOST_RESPONSE, 0.35),
        (FaultKind.TRANSACTION_CONFLICT, 0.15),
        (FaultKind.THROTTLE, 0.2),
        (FaultKind.SERVER_ERROR, 0.15),
        (FaultKind.CONNECTION_RESET, 0.15),
    ],
    "GetItem": [(FaultKind.THROTTLE, 0.5), (FaultKind.SERVER_ERROR, 0.5)],
    # The payload stored apart (ADR 0023), written before the transaction: a lost response is resent, and a
    # failure after it leaves an orphan that the client's retry does not reuse.
    "PutItem": [
        (FaultKind.LOST_RESPONSE, 0.5),
        (FaultKind.SERVER_ERROR, 0.25),
        (FaultKind.CONNECTION_RESET, 0.25),
    ],
}


CONSUMER_DYNAMODB_FAULTS: Final[dict[str, list[tuple[FaultKind, float]]]] = {
    # The consumer helper (ADR 0019): its claim and give-back (UpdateItem) and its completion with the side
    # effect (TransactWriteItems); a lost response is the one that matters: applied, answer lost.
    "UpdateItem": [(FaultKind.LOST_RESPONSE, 0.5), (FaultKind.SERVER_ERROR, 0.5)],
    "TransactWriteItems": [
        (FaultKind.LOST_RESPONSE, 0.4),
        (FaultKind.THROTTLE, 0.3),
        (FaultKind.SERVER_ERROR, 0.3),
    ],
}


def install_faults(
    client: Any,
    plan: dict[str, list[tuple[FaultKind, float]]],
    rate: float,
    seed: int,
    dedup_ledger: DedupLedger | None = None,
) -> FaultInjector:
    """Each call of a planned operation is faulted with probability about `rate`, split by the shares.

    Rules are tried in order, so each rule's probability is scaled up by what the earlier ones left. On a
    FIFO queue every relay's SQS client shares the scenario's `dedup_ledger`."""
    injector = FaultInjector(client, seed=seed, dedup_ledger=dedup_ledger)
    if rate <= 0:
        return injector
    for operation, shares in plan.items():
        left = 1.0
        for kind, share in shares:
            probability = rate * share
            injector.add(operation, kind, times=None, rate=min(1.0, probability / max(left, 1e-9)))
            left -= probability
    return injector


def fault_counts(injectors: Iterable[FaultInjector]) -> tuple[Counter[str], Counter[str]]:
    """Faults injected so far, by kind and by operation."""
    by_kind: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    for injector in injectors:
        for (operation, kind), count in list(injector.injected.items()):
            by_kind[kind.value] += count
            by_operation[operation] += count
    return by_kind, by_operation


class KillSwitch:
    """Once tripped, every call through the given clients raises `Crash` before it is sent."""

    def __init__(self, clients: Iterable[Any], *, after_operation: str | None = None) -> None:
        self._lock = threading.Lock()
        self.tripped = False
        self.crashed = False
        self.after_operation = after_operation
        for client in clients:
            client.meta.events.register("before-call", self._before)
            client.meta.events.register("after-call", self._after)

    def trip(self) -> None:
        with self._lock:
            self.tripped = True

    def _before(self, **_: Any) -> None:
        with self._lock:
            if self.tripped:
                self.crashed = True
                raise Crash("killed (simulated)")

    def _after(self, model: Any, http_response: Any = None, **_: Any) -> None:
        status = getattr(http_response, "status_code", 500)
        with self._lock:
            if self.tripped or self.after_operation != model.name or status >= 300:
                return
            self.tripped = True
            self.crashed = True
        raise Crash(f"killed (simulated) right after {model.name} succeeded")

"""Count the AWS calls a client makes, by operation, from botocore's own events (not from our code)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class CallCounter:
    """Counts every API call made through the given clients (`before-call`, so retries by botocore are
    not counted twice: one API call, however many HTTP attempts)."""

    def __init__(self, *clients: Any) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

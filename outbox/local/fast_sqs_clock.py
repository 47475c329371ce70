"""Make moto's SQS read the clock cheaply.

moto's SQS asks "is this message visible? delayed?" of every message in a queue on every send, receive and
delete, and each question builds two naive `datetime`s to compute the current Unix time. With a thousand
messages in a queue that is millions of `datetime` objects per drain (measured: ~90 s to drain 1,000
messages, ~80 % of it in `moto.core.utils.unix_time`). `time.time()` is the same number, made directly.
Only the no-argument calls are short-circuited; a call with a datetime goes to moto's own function.
Test and local infrastructure only (see ADR 0011).
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import moto.sqs.models as sqs_models

_lock = threading.Lock()
_ORIGINALS: dict[str, Any] = {}


def _fast(original: Any, scale: float) -> Any:
    def now_or_convert(dt: datetime.datetime | None = None) -> float:
        return time.time() * scale if dt is None else float(original(dt))

    now_or_convert.__wrapped__ = original  # type: ignore[attr-defined]
    return now_or_convert


def install_fast_sqs_clock() -> None:
    """Idempotent; affects moto's SQS in this process (in-process mocks and an embedded server)."""
    with _lock:
        if _ORIGINALS:
            return
        for name, scale in (("unix_time", 1.0), ("unix_time_millis", 1000.0)):
            _ORIGINALS[name] = getattr(sqs_models, name)
            setattr(sqs_models, name, _fast(_ORIGINALS[name], scale))


def uninstall_fast_sqs_clock() -> None:
    with _lock:
        for name, original in _ORIGINALS.items():
            setattr(sqs_models, name, original)
        _ORIGINALS.clear()

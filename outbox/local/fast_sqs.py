"""Make moto's SQS skip work whose result it throws away: building datetimes to read the clock, and
counting the whole queue on every send.

- **Clock.** moto's SQS asks "is this message visible? delayed?" of every message in a queue on every send,
  receive and delete, and each question builds two naive `datetime`s to compute the current Unix time.
  With a thousand messages in a queue that is millions of `datetime` objects per drain (measured: ~90 s to
  drain 1,000 messages, ~80 % of it in `moto.core.utils.unix_time`). `time.time()` is the same number, made
  directly. Only the no-argument calls are short-circuited; a call with a datetime goes to moto's own.
- **Counts on send.** `SendMessage`/`SendMessageBatch` read `queue.attributes` up to three times per entry
  for one key (`ContentBasedDeduplication`), and moto's `attributes` property computes every attribute,
  among them three message counts that each walk the whole queue. With 5,000 messages waiting in a FIFO
  queue that made every batch walk it ~90 times (measured with py-spy on the chaos run: 7 % of the server's
  time at 2,000 messages, growing with the queue). While a send runs, the three counts answer 0 instead;
  the send path reads no count (checked below), and every other caller still gets moto's numbers.

Test and local infrastructure only (ADR 0011). Installing checks fingerprints of the moto functions the
count shortcut relies on and leaves it out (with a warning from `EmbeddedAws`) if they changed.
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import moto.sqs.models as sqs_models
from moto.sqs.models import Queue, SQSBackend

from outbox.local.fast_moto import MotoInternalsChanged, mismatched

__all__ = ["SEND_PATH_FINGERPRINTS", "install_fast_sqs", "sending", "uninstall_fast_sqs"]

# sha256 of the source of the send path: none of it may read a message count from `queue.attributes`.
SEND_PATH_FINGERPRINTS: Final[Mapping[str, str]] = {
    "backend.send_message": "bf161af09a9e6b860e3dd5d8f58ccc802623caa86883fab9b2ffb333f8f70330",
    "backend.send_message_batch": "0707ad219481c867546327a5e0f42421187e1706202c68f9d8e87be597d3417a",
    "backend._validate_message": "39cb57c19e596164bc306395ca3697adeea6deaa48a3277831ce6aaa99816e3a",
    "queue.add_message": "f27c9231c1f2043382bc1435c4dfbab7b645389df642f050d9dda477f6535c35",
    "queue.attributes": "40cb990b121628d535cecbcd0e0d333984024633b70a097489ae8611e1a59338",
}

_SEND_PATH: Final[Mapping[str, Callable[..., Any]]] = {
    "backend.send_message": SQSBackend.send_message,
    "backend.send_message_batch": SQSBackend.send_message_batch,
    "backend._validate_message": SQSBackend._validate_message,
    "queue.add_message": Queue.add_message,
    "queue.attributes": Queue.attributes.fget,  # type: ignore[attr-defined]
}
_COUNTS: Final = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
_SENDS: Final = ("send_message", "send_message_batch")

_lock = threading.Lock()
_ORIGINALS: dict[tuple[Any, str], Any] = {}
_in_send: ContextVar[bool] = ContextVar("fast_sqs_in_send", default=False)


def _fast_clock(original: Any, scale: float) -> Any:
    def now_or_convert(dt: datetime.datetime | None = None) -> float:
        return time.time() * scale if dt is None else float(original(dt))

    now_or_convert.__wrapped__ = original  # type: ignore[attr-defined]
    return now_or_convert


def _uncounted_while_sending(original: property) -> property:
    def count(queue: Queue) -> int:
        return 0 if _in_send.get() else int(original.fget(queue))  # type: ignore[misc]

    return property(count)


def _marked_as_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(*args: Any, **kwargs: Any) -> Any:
        with sending():
            return original(*args, **kwargs)

    return send


@contextmanager
def sending() -> Iterator[None]:
    """Inside, moto's queue counts answer 0 (this thread only); the send path never reads them."""
    token = _in_send.set(True)
    try:
        yield
    finally:
        _in_send.reset(token)


def _patch(owner: Any, name: str, replacement: Any) -> None:
    _ORIGINALS[(owner, name)] = owner.__dict__[name]
    setattr(owner, name, replacement)


def install_fast_sqs() -> None:
    """Idempotent; affects moto's SQS in this process (in-process mocks and an embedded server). Raises
    `MotoInternalsChanged` (with the clock already installed) if the send path is not the reviewed one."""
    with _lock:
        if _ORIGINALS:
            return
        for name, scale in (("unix_time", 1.0), ("unix_time_millis", 1000.0)):
            _patch(sqs_models, name, _fast_clock(sqs_models.__dict__[name], scale))
        changed = mismatched(_SEND_PATH, SEND_PATH_FINGERPRINTS)
        if changed:
            raise MotoInternalsChanged(
                f"moto's SQS send path differs from the reviewed one in: {', '.join(changed)}; queue counts "
                "stay moto's own. Check it reads no count, then update SEND_PATH_FINGERPRINTS."
            )
        for name in _COUNTS:
            _patch(Queue, name, _uncounted_while_sending(Queue.__dict__[name]))
        for name in _SENDS:
            _patch(SQSBackend, name, _marked_as_send(SQSBackend.__dict__[name]))


def uninstall_fast_sqs() -> None:
    with _lock:
        for (owner, name), original in _ORIGINALS.items():
            setattr(owner, name, original)
        _ORIGINALS.clear()

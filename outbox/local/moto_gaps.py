"""Where moto answers differently from AWS in a way the outbox relies on, made to answer as AWS documents.

- **`AWSTraceHeader` on `SendMessageBatch`.** AWS keeps a batch entry's `MessageSystemAttributes` (the
  `AWSTraceHeader` system attribute; SQS developer guide, "Amazon SQS message system attributes") as it
  does for `SendMessage`; moto's `send_message_batch` drops them, so a consumer never saw the trace the
  relay sent (ADR 0021). After moto's own batch send, each message gets its entry's system attributes.

Test and local infrastructure only (the embedded emulator installs it), like ADR 0011's patches.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

from moto.sqs.models import SQSBackend

__all__ = ["install_moto_gaps", "uninstall_moto_gaps"]

_lock: Final = threading.Lock()
_original: list[Callable[..., Any]] = []


def _keeping_system_attributes(send_batch: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_batch)
    def send(self: SQSBackend, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        messages, failed = send_batch(self, queue_name, entries)
        by_id = {entry["Id"]: entry for entry in entries.values()}
        for message in messages:
            system = by_id.get(getattr(message, "user_id", None), {}).get("MessageSystemAttributes") or {}
            if "AWSTraceHeader" in system:  # as moto's `send_message` stores it: the attribute's value dict
                message.system_attributes = {
                    **message.system_attributes,
                    "AWSTraceHeader": system["AWSTraceHeader"],
                }
        return messages, failed

    return send


def install_moto_gaps() -> None:
    """Idempotent; affects moto's SQS in this process (in-process mocks and an embedded server)."""
    with _lock:
        if _original:
            return
        _original.append(SQSBackend.send_message_batch)
        SQSBackend.send_message_batch = _keeping_system_attributes(SQSBackend.send_message_batch)  # type: ignore[method-assign]


def uninstall_moto_gaps() -> None:
    with _lock:
        if _original:
            SQSBackend.send_message_batch = _original.pop()  # type: ignore[method-assign]

"""Where moto answers differently from AWS in a way the outbox relies on, made to answer as AWS documents.

- **`AWSTraceHeader` on `SendMessageBatch`.** AWS keeps a batch entry's `MessageSystemAttributes` (the
  `AWSTraceHeader` system attribute; SQS developer guide, "Amazon SQS message system attributes") as it
  does for `SendMessage`; moto's batch send drops them, so a consumer never saw the trace the relay sent
  (ADR 0021). After moto has answered a batch, each message it queued gets its entry's system attributes.
  The patch sits on the response layer, which `outbox.local.fast_sqs` (installed and uninstalled around
  it by its own tests) never touches.

Test and local infrastructure only (the embedded emulator installs it), like ADR 0011's patches.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

from moto.sqs.responses import SQSResponse

__all__ = ["install_moto_gaps"]

_lock: Final = threading.Lock()
_MARK: Final = "_outbox_keeps_system_attributes"


def _keeping_system_attributes(send_batch: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_batch)
    def send(self: SQSResponse) -> Any:
        traced = {
            str(entry.get("Id")): entry["MessageSystemAttributes"]["AWSTraceHeader"]
            for entry in self._get_param("Entries", [])
            if "AWSTraceHeader" in (entry.get("MessageSystemAttributes") or {})
        }
        answer = send_batch(self)
        if not traced:
            return answer
        wanted = {
            str(success["MessageId"]): traced[str(success["Id"])]
            for success in getattr(answer, "result", {}).get("Successful", [])
            if str(success["Id"]) in traced
        }
        queue = self.sqs_backend.get_queue(self._get_queue_name())
        for message in reversed(queue._messages):  # the batch's messages are the newest
            if not wanted:
                break
            if (trace := wanted.pop(message.id, None)) is not None:  # stored as moto's SendMessage does
                message.system_attributes = {**message.system_attributes, "AWSTraceHeader": trace}
        return answer

    setattr(send, _MARK, True)
    return send


def install_moto_gaps() -> None:
    """Idempotent; affects moto's SQS in this process (in-process mocks and an embedded server)."""
    with _lock:
        current = SQSResponse.send_message_batch
        if not getattr(current, _MARK, False):
            SQSResponse.send_message_batch = _keeping_system_attributes(current)  # type: ignore[method-assign]

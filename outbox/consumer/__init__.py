"""The consumer side: status tracking past QUEUED and effectively-once processing (ADR 0019)."""

from outbox.consumer.processor import (
    ClaimLost,
    Consumed,
    ConsumedMessage,
    NotClaimed,
    OutboxConsumer,
    PayloadUnreadable,
)

__all__ = ["ClaimLost", "Consumed", "ConsumedMessage", "NotClaimed", "OutboxConsumer", "PayloadUnreadable"]

"""The outbox's own exceptions. AWS errors are translated into these at the store boundary
(`... from exc`); anything not recognised propagates unchanged."""

from __future__ import annotations


class OutboxError(Exception):
    """Base of every error this library raises on purpose."""


class InvalidRequest(OutboxError):
    """A client fault: refused with a 4xx, and nothing is written."""

    http_status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class PayloadTooLarge(InvalidRequest):
    http_status = 413


class UnsupportedMediaType(InvalidRequest):
    http_status = 415


class MethodNotAllowed(InvalidRequest):
    http_status = 405


class IdempotencyConflict(InvalidRequest):
    """The `Idempotency-Key` was used before with a different request."""

    http_status = 409


class MessageNotFound(OutboxError):
    """No such message, or not one the caller created (the two look the same to a caller)."""


class StoreUnavailable(OutboxError):
    """DynamoDB refused or failed the write after retries; nothing was written."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

"""Transactional outbox for AWS serverless: DynamoDB `TransactWriteItems` in, SQS out.

Public API: `outbox_write` (actions for your own transaction), `enqueue` (a transaction of its own),
`Settings`, `Status`, and the errors in `outbox.errors`.
"""

from outbox.api import OutboxWrite, enqueue, outbox_write
from outbox.domain import Status
from outbox.errors import IdempotencyConflict, InvalidRequest, OutboxError, StoreUnavailable
from outbox.service import Accepted
from outbox.settings import Settings, SettingsError

__all__ = [
    "Accepted",
    "IdempotencyConflict",
    "InvalidRequest",
    "OutboxError",
    "OutboxWrite",
    "Settings",
    "SettingsError",
    "Status",
    "StoreUnavailable",
    "enqueue",
    "outbox_write",
]

"""Transactional outbox for AWS serverless: DynamoDB `TransactWriteItems` in, SQS out.

Public API: `outbox_write` (actions for your own transaction), `enqueue` (a transaction of its own),
`explain_cancellation` (why your transaction holding an outbox write was cancelled), `Settings`, `Status`,
and the errors in `outbox.core.errors`.

The names are resolved on first use (PEP 562), so importing one submodule (the relay's handler imports
`outbox.core.clients`) does not import the ingest path with it: a cold start pays only for what it runs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outbox.api import OutboxWrite, enqueue, outbox_write
    from outbox.core.domain import Status
    from outbox.core.errors import IdempotencyConflict, InvalidRequest, OutboxError, StoreUnavailable
    from outbox.core.settings import Settings, SettingsError
    from outbox.data.cancellation import (
        CancellationExplanation,
        CancellationKind,
        ItemFailure,
        explain_cancellation,
    )
    from outbox.ingest.service import Accepted

_EXPORTS = {
    "Accepted": "outbox.ingest.service",
    "CancellationExplanation": "outbox.data.cancellation",
    "CancellationKind": "outbox.data.cancellation",
    "IdempotencyConflict": "outbox.core.errors",
    "InvalidRequest": "outbox.core.errors",
    "ItemFailure": "outbox.data.cancellation",
    "OutboxError": "outbox.core.errors",
    "OutboxWrite": "outbox.api",
    "Settings": "outbox.core.settings",
    "SettingsError": "outbox.core.settings",
    "Status": "outbox.core.domain",
    "StoreUnavailable": "outbox.core.errors",
    "enqueue": "outbox.api",
    "explain_cancellation": "outbox.data.cancellation",
    "outbox_write": "outbox.api",
}

__all__ = [
    "Accepted",
    "CancellationExplanation",
    "CancellationKind",
    "IdempotencyConflict",
    "InvalidRequest",
    "ItemFailure",
    "OutboxError",
    "OutboxWrite",
    "Settings",
    "SettingsError",
    "Status",
    "StoreUnavailable",
    "enqueue",
    "explain_cancellation",
    "outbox_write",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the installed metadata: the version lives in pyproject.toml only
        try:
            return importlib.metadata.version("dynamodb-sqs-outbox")
        except importlib.metadata.PackageNotFoundError:  # copied without metadata (the Lambda asset)
            return "unknown"
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'outbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

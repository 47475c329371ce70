"""The stack's Lambda functions, named the way Lambda resolves them (`module.attribute`).

One contract between the code, the CDK construct (which deploys these handler strings) and the local
emulator (which runs the functions by the same names, `outbox.local.functions`). Naming the relay here, as
data, is how the tools run it without the `outbox` package importing `relay` (ADR 0016).
"""

from __future__ import annotations

from typing import Final

INGEST_HANDLER: Final = "outbox.ingest.handler.handler"
RELAY_HANDLER: Final = "relay.handler.handler"
EXAMPLE_CONSUMER_HANDLER: Final = "outbox.consumer.example.handler"
"""An SQS consumer through the consumer helper (ADR 0019): `outbox serve` runs it; the stack, on request."""
RELAY_STOP_MARGIN_SECONDS: Final = 5.0
"""The relay starts no work this close to its invocation's deadline: its last batch ends inside it."""
DOORBELL_RUN_SECONDS: Final = 10.0
"""How long an invocation woken by the stream keeps relaying its shards (ADR 0017). While it runs, the
records behind its batch wait; bounding it keeps the mapping's iterator age, which the stack alarms on, a
measure of the doorbell falling behind rather than of one invocation's loop. A backlog it leaves is the
next batch's, or the sweep's (which runs to the function's timeout)."""
WAIT_FOR_BUSY_SHARDS: Final = "wait_for_busy_shards"
"""A manual relay invocation whose event holds this key set to true is a full pass: a shard another relay
holds is waited for, up to one lease, rather than skipped (`outbox relay --once` sends it; ADR 0018)."""

"""The outbox as AWS CDK constructs, for a team's own CDK app: `pip install 'dynamodb-sqs-outbox[cdk]'`.

`OutboxConstruct` is the storage and relay part (both tables, the queue and its DLQ, the relay function and
its schedule) with grant helpers for your own functions; `IngestApi` is the HTTP API in front of the ingest
handler; `OutboxAlarms` watches both; `OutboxDashboard` draws them all on one CloudWatch dashboard
(cdk-monitoring-constructs), with the alarms' status on top. The Lambda code is built from the installed
`outbox` and `relay` packages (`lambda_code`), so none of this needs a clone of the repository. Never
imported by the handlers; the Lambda asset leaves this package out.
"""

from __future__ import annotations

from outbox.cdk.alarms import OutboxAlarms
from outbox.cdk.bundling import ARCHITECTURE, RUNTIME, lambda_code
from outbox.cdk.config import StackConfig
from outbox.cdk.construct import OutboxConstruct
from outbox.cdk.dashboard import OutboxDashboard, alarms_of
from outbox.cdk.ingest_api import IngestApi

__all__ = [
    "ARCHITECTURE",
    "RUNTIME",
    "IngestApi",
    "OutboxAlarms",
    "OutboxConstruct",
    "OutboxDashboard",
    "StackConfig",
    "alarms_of",
    "lambda_code",
]

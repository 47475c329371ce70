"""Names shared by the stack, its tests and the local rehearsal, so a rename happens in one place."""

from __future__ import annotations

from typing import Final

from outbox.core import functions

DEFAULT_STACK_NAME: Final = "Outbox"
DEFAULT_ACCOUNT: Final = "123456789012"
"""Synth needs no credentials: without `CDK_DEFAULT_ACCOUNT` the stack is built for this placeholder."""
DEFAULT_REGION: Final = "us-east-1"

# Lambda entry points (docs/design.md §5): a contract with the code, tested against the built asset.
INGEST_HANDLER: Final = functions.INGEST_HANDLER
RELAY_HANDLER: Final = functions.RELAY_HANDLER
EXAMPLE_CONSUMER_HANDLER: Final = functions.EXAMPLE_CONSUMER_HANDLER

# Metrics the relay publishes through Powertools EMF (relay/handler.py); the alarms watch them.
METRICS_NAMESPACE: Final = "Outbox"
RELAY_SERVICE: Final = "outbox-relay"
INGEST_SERVICE: Final = "outbox-ingest"
ACCEPTED_METRIC: Final = "MessagesAccepted"
"""Powertools puts the service name in the `service` dimension of every metric."""
OLDEST_PENDING_METRIC: Final = "OldestPendingAgeSeconds"
POISONED_METRIC: Final = "MessagesPoisoned"
LATE_FIFO_RESEND_METRIC: Final = "FifoResendsAfterWindow"
WRITE_UNITS_METRIC: Final = "DynamoDBWriteUnits"
READ_UNITS_METRIC: Final = "DynamoDBReadUnits"
SQS_REQUESTS_METRIC: Final = "SQSRequests"
S3_WRITE_REQUESTS_METRIC: Final = "S3WriteRequests"
S3_READ_REQUESTS_METRIC: Final = "S3ReadRequests"
"""What a run's calls consumed, counted live from the responses (outbox.core.usage, issue #17)."""

# API routes (docs/design.md §5).
POST_MESSAGES_ROUTE: Final = "/messages"
GET_MESSAGE_ROUTE: Final = "/messages/{message_id}"

# Stack outputs, read by people (`cdk deploy -O`) and by the rehearsal.
OUTPUT_MESSAGES_TABLE: Final = "MessagesTableName"
OUTPUT_OUTBOX_TABLE: Final = "OutboxTableName"
OUTPUT_PAYLOADS_TABLE: Final = "PayloadsTableName"
OUTPUT_PAYLOADS_BUCKET: Final = "PayloadsBucketName"
OUTPUT_QUEUE_URL: Final = "QueueUrl"
OUTPUT_DLQ_URL: Final = "DeadLetterQueueUrl"
OUTPUT_API_URL: Final = "ApiUrl"
OUTPUT_INGEST_FUNCTION: Final = "IngestFunctionName"
OUTPUT_RELAY_FUNCTION: Final = "RelayFunctionName"
OUTPUT_ALARM_TOPIC: Final = "AlarmTopicArn"
OUTPUT_OPERATOR_POLICY: Final = "OperatorPolicyArn"
OUTPUT_EXAMPLE_CONSUMER_FUNCTION: Final = "ExampleConsumerFunctionName"

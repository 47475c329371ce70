"""The reusable outbox: the tables, the payload bucket, the queue with its dead-letter queue, and the relay,
woken by the Outbox table's stream (the doorbell) and run on a schedule (the sweep).

A team can put this construct in its own stack and let its own functions write messages in their own
transactions with `grant_enqueue` (docs/design.md §5, library API); the standalone stack adds the ingest
API and the alarms around it. Tables are built from `outbox.core.schema`, the same definitions `outbox init`
and the tests use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from outbox.cdk.bundling import lambda_code
from outbox.cdk.config import RemovalPolicyName, StackConfig, settings_environment
from outbox.cdk.function import OutboxFunction
from outbox.cdk.names import RELAY_HANDLER
from outbox.cdk.payload_bucket import READ_ACTIONS as PAYLOAD_OBJECT_READ_ACTIONS
from outbox.cdk.payload_bucket import WRITE_ACTIONS as PAYLOAD_OBJECT_WRITE_ACTIONS
from outbox.cdk.payload_bucket import PayloadBucket
from outbox.core.schema import (
    DLQ_MAX_RECEIVE_COUNT,
    FAILED_INDEX,
    PAYLOAD_GRACE_DAYS,
    QUEUE_MAX_MESSAGE_BYTES,
    TTL_ATTRIBUTE,
    messages_table_definition,
    outbox_table_definition,
    payloads_table_definition,
)

QUEUE_RETENTION: Final = cdk.Duration.days(14)
"""SQS's longest retention: a consumer outage of up to two weeks loses nothing already queued."""
RELAY_MEMORY_MB: Final = 512
SCHEDULE_MAX_EVENT_AGE: Final = cdk.Duration.seconds(60)
"""The next tick is the retry: a late or failed run is never replayed (docs/design.md §4)."""

# The doorbell (ADR 0017): the Outbox table's stream invokes the relay with the shards that got new entries.
DOORBELL_BATCH_SIZE: Final = 1000
"""Records per invocation. A keys-only record is a few hundred bytes, and the relay only collects the
shards they name, so a large batch costs nothing and saves invocations when the relay falls behind."""
DOORBELL_MAX_PARALLELIZATION: Final = 10
"""Lambda's limit on concurrent batches per stream shard (its ParallelizationFactor). The mapping uses
`min(OUTBOX_SHARDS, 10)`: as many concurrent woken runs per stream shard as there are outbox shards to
work, and no more, since more runs than shards can only contend for the same entries. (Lambda keeps order
per item, not per partition key, so two lanes may ring one shard at once; claims keep them apart.)"""

# IAM: each role gets the actions of the API calls its code makes, and nothing else (ADR 0010, revision of
# 2026-12-01). Inside `TransactWriteItems` every action is authorized as its own item action (Put → PutItem,
# Update → UpdateItem, Delete → DeleteItem, ConditionCheck → ConditionCheckItem); a condition expression or
# `ReturnValuesOnConditionCheckFailure` on a Put/Update/Delete needs nothing more. Only the relay's
# transactions have a `ConditionCheck` action (the shard lease's, on the Outbox table, ADR 0018), so only the
# relay gets `dynamodb:ConditionCheckItem`, on that table alone. `sqs:SendMessage` also authorizes
# `SendMessageBatch`. Tables use the AWS managed DynamoDB key and queues SSE-SQS: no `kms:*` for anyone.
ENQUEUE_MESSAGES_ACTIONS: Final = ("dynamodb:PutItem",)
"""The message Put of the ingest transaction (outbox/data/transactions.py)."""
ENQUEUE_OUTBOX_ACTIONS: Final = ("dynamodb:PutItem",)
"""The entry Put of the same transaction."""
ENQUEUE_PAYLOADS_ACTIONS: Final = ("dynamodb:PutItem",)
"""A payload stored apart, written before the transaction (outbox/data/payloads.py, ADR 0023)."""
READ_STATUS_ACTIONS: Final = ("dynamodb:GetItem",)
"""`GET /messages/{id}`, and a replayed POST whose cancellation did not carry the stored item; on the
Payloads table, `?include=payload` of a payload stored apart."""
RELAY_OUTBOX_ACTIONS: Final = (
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
"""Query a shard; acquire, renew and release its lease (UpdateItem, relay/leases.py); the lease's check in
every relay transaction (ConditionCheck); roll back and park (transaction Updates); finalize and drop a
stale entry (transaction Deletes). relay/store.py."""
RELAY_PAYLOADS_ACTIONS: Final = ("dynamodb:BatchGetItem",)
"""Fetch the payloads stored apart (ADR 0023): read only, never written by the relay."""
ENQUEUE_OBJECT_ACTIONS: Final = PAYLOAD_OBJECT_WRITE_ACTIONS
"""A payload above the item ceiling, written to S3 before the transaction (`s3:PutObject` under
`payloads/`, ADR 0023)."""
READ_OBJECT_ACTIONS: Final = PAYLOAD_OBJECT_READ_ACTIONS
"""`s3:GetObject` under `payloads/`: `?include=payload` and `status --payload` of a payload in S3; a
consumer's extended client reading the pointer's object; and the relay's `HeadObject` (authorized by
`s3:GetObject`), which checks the object is there before a pointer to it is sent and reads no content."""
RELAY_MESSAGES_ACTIONS: Final = ("dynamodb:BatchGetItem", "dynamodb:UpdateItem")
"""Fetch payloads (BatchGetItem); PENDING→QUEUED at finalize and PENDING→FAILED at poison (transaction
Updates)."""
RELAY_STREAM_ACTIONS: Final = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
"""The event source mapping reads the Outbox table's stream with the function's role: the four actions
Lambda documents for a DynamoDB stream, scoped to this stream as the DynamoDB developer guide's example
policy scopes them (not CDK's `grant_stream_read`, which grants `ListStreams` on `*`)."""
RELAY_QUEUE_ACTIONS: Final = ("sqs:SendMessage",)
"""`SendMessageBatch` (relay/sender.py); the relay reads no queue attributes."""
CONSUMER_MESSAGES_ACTIONS: Final = ("dynamodb:UpdateItem",)
"""The consumer helper (outbox/consumer): claim and give back (UpdateItem), complete (a transaction Update).
The consumer's own writes need grants of the consumer's own."""
CONSUMER_QUEUE_ACTIONS: Final = ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")
"""What Lambda's SQS event source mapping calls with the function's role (Lambda developer guide, "Using
Lambda with Amazon SQS": execution role permissions)."""
QUEUE_VISIBILITY_SECONDS: Final = 30
"""The queue keeps SQS's default visibility timeout; Lambda refuses an SQS mapping for a function whose
timeout is longer."""
CONSUMER_BATCH_SIZE: Final = 10
"""Records per consumer invocation: SQS's largest receive (FIFO mappings allow no more)."""
ADMIN_MESSAGES_ACTIONS: Final = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
)
"""The operator commands (outbox/ops/admin.py): `status`, `requeue` and `skip` read the message (GetItem);
`stats` counts statuses (Scan) and looks up the messages of parked entries (BatchGetItem); `requeue` and
`skip` update the message in their transaction; `clear-owed-ttl` scans for owed messages and removes
their TTL (Scan, UpdateItem)."""
ADMIN_PAYLOADS_ACTIONS: Final = ("dynamodb:GetItem",)
"""`status --payload` of a payload stored apart; no operator command writes one."""
ADMIN_FAILED_INDEX_ACTIONS: Final = ("dynamodb:Scan",)
"""`requeue --all-failed` lists the FAILED messages from the sparse `failed` index."""
ADMIN_DLQ_ACTIONS: Final = ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage")
"""`dlq list` reads the dead-letter queue and makes what it read visible again; `dlq redrive` deletes the
copies it sent again (outbox/ops/dlq.py). The URL comes from the stack's output: no queue attributes."""
ADMIN_OUTBOX_ACTIONS: Final = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
"""`requeue` reads the parked entry (GetItem) and sets it READY (transaction Update) or writes a new one
(transaction Put); `skip` deletes it (transaction Delete), finding an orphaned one by reading the shards
(Query); `stats` reads every shard (Query)."""


def removal_policy(config: StackConfig) -> cdk.RemovalPolicy:
    return (
        cdk.RemovalPolicy.RETAIN
        if config.removal_policy is RemovalPolicyName.RETAIN
        else cdk.RemovalPolicy.DESTROY
    )


class OutboxConstruct(Construct):
    """Storage and relay. `environment` is what any function using the outbox needs (Settings.from_env)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: StackConfig | None = None,
        code: lambda_.Code | None = None,
    ) -> None:
        """`config`: the outbox's settings and the stack's choices (defaults: a standard queue, 8 shards,
        tables retained). `code`: the Lambda asset; by default built from the installed packages
        (`lambda_code()`), which a stack with more functions of ours should build once and pass to each."""
        super().__init__(scope, id)
        config = config or StackConfig()
        code = code or lambda_code()
        self.code = code
        """The Lambda asset the relay runs from (share it with `IngestApi`)."""
        policy = removal_policy(config)
        # TTL bounds a message's life and idempotency window (docs/design.md §2); entries are deleted when
        # relayed.
        self.messages_table = self._table("Messages", messages_table_definition("-"), config, ttl=True)
        self.outbox_table = self._table("Outbox", outbox_table_definition("-"), config, ttl=False)
        # Payloads too large to ride in their message item, written once; TTL past the message's (ADR 0023).
        self.payloads_table = self._table("Payloads", payloads_table_definition("-"), config, ttl=True)
        # Payloads above what an item holds, written once before the transaction, sent as pointers; the
        # lifecycle rule expires them on the Payloads table's horizon (ADR 0023).
        self.payload_bucket = PayloadBucket(
            self,
            "PayloadBucket",
            expire_after=cdk.Duration.days(config.settings.retention_days + PAYLOAD_GRACE_DAYS),
            removal_policy=policy,
        )
        """The S3 claim check's bucket (ADR 0023); a retained bucket is kept with its objects, a destroyed
        one must be emptied first (CloudFormation deletes no bucket that holds objects)."""
        self.failed_index_arn = f"{self.messages_table.table_arn}/index/{FAILED_INDEX}"
        """The Messages table's sparse FAILED index, by name (no `index/*`)."""
        queue_options: dict[str, Any] = {
            "encryption": sqs.QueueEncryption.SQS_MANAGED,
            "enforce_ssl": True,
            "max_message_size_bytes": QUEUE_MAX_MESSAGE_BYTES,
            "retention_period": QUEUE_RETENTION,
            "removal_policy": policy,
        }
        if config.fifo:
            queue_options["fifo"] = True
        self.dead_letter_queue = sqs.Queue(self, "DeadLetterQueue", **queue_options)
        self.queue = sqs.Queue(
            self,
            "Queue",
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=DLQ_MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
            ),
            **queue_options,
        )
        self.environment: Mapping[str, str] = settings_environment(
            config.settings,
            messages_table=self.messages_table.table_name,
            outbox_table=self.outbox_table.table_name,
            queue_url=self.queue.queue_url,
            payloads_table=self.payloads_table.table_name,
            payloads_bucket=self.payload_bucket.bucket_name,
        )
        self.relay = OutboxFunction(
            self,
            "Relay",
            handler=RELAY_HANDLER,
            code=code,
            environment=self.environment,
            timeout=cdk.Duration.seconds(config.relay_timeout_seconds),
            memory_size=RELAY_MEMORY_MB,
            description="Outbox relay: entries to SQS, woken by the Outbox stream, swept on a schedule",
            log_retention_days=config.log_retention_days,
            removal_policy=policy,
        )
        self.relay.function.configure_async_invoke(retry_attempts=0, max_event_age=SCHEDULE_MAX_EVENT_AGE)
        self.grant_relay(self.relay.function)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Runs the outbox relay; a missed tick is retried by the next one",
            schedule=events.Schedule.rate(cdk.Duration.seconds(config.settings.schedule_seconds)),
            targets=[
                targets.LambdaFunction(
                    cast("lambda_.IFunction", self.relay.function),
                    retry_attempts=0,
                    max_event_age=SCHEDULE_MAX_EVENT_AGE,
                )
            ],
        )
        stream_read = self.grant_doorbell(self.relay.function)
        self.doorbell = self.relay.function.add_event_source_mapping(
            "Doorbell",
            event_source_arn=self.outbox_stream_arn,
            starting_position=lambda_.StartingPosition.LATEST,
            filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})],
            batch_size=DOORBELL_BATCH_SIZE,
            max_batching_window=cdk.Duration.seconds(0),
            parallelization_factor=min(config.settings.outbox_shards, DOORBELL_MAX_PARALLELIZATION),
            retry_attempts=0,
            bisect_batch_on_error=False,
            max_record_age=cdk.Duration.seconds(config.settings.schedule_seconds),
        )
        """The Outbox table's stream invoking the relay with new entries' shards (ADR 0017). A hint, never a
        duty: a failed batch is not retried nor split (that would hold its stream shard back), and a record
        older than one schedule period is skipped, since a sweep has run since it was written."""
        stream_read.apply_before(self.doorbell)  # Lambda checks the role can read the stream on creation

    @property
    def outbox_stream_arn(self) -> str:
        arn = self.outbox_table.table_stream_arn
        if arn is None:
            raise ValueError("the Outbox table has no stream")
        return arn

    def grant_doorbell(self, grantee: iam.IGrantable) -> iam.Grant:
        """What the event source mapping reads the Outbox stream with (the function's role)."""
        return _grant(grantee, (RELAY_STREAM_ACTIONS, [self.outbox_stream_arn]))

    def grant_enqueue(self, grantee: iam.IGrantable) -> iam.Grant:
        """What the two actions of a message's transaction take: a Put on each table; and the payload's
        own write before them, to the Payloads table or the bucket. `enqueue()` (a transaction of its own)
        also reads the stored message on a replay: add `grant_read_status`."""
        return _grant(
            grantee,
            (ENQUEUE_MESSAGES_ACTIONS, [self.messages_table.table_arn]),
            (ENQUEUE_OUTBOX_ACTIONS, [self.outbox_table.table_arn]),
            (ENQUEUE_PAYLOADS_ACTIONS, [self.payloads_table.table_arn]),
            (ENQUEUE_OBJECT_ACTIONS, [self.payload_bucket.objects_arn]),
        )

    def grant_read_status(self, grantee: iam.IGrantable) -> iam.Grant:
        """Reading one message's status by its id, and its payload wherever it is kept."""
        return _grant(
            grantee,
            (READ_STATUS_ACTIONS, [self.messages_table.table_arn, self.payloads_table.table_arn]),
            (READ_OBJECT_ACTIONS, [self.payload_bucket.objects_arn]),
        )

    def grant_relay(self, grantee: iam.IGrantable) -> iam.Grant:
        """Everything a relay run does: take shard leases, fetch, send, finalize, roll back, park; and the
        `HeadObject` of a payload in S3 before its pointer is sent (never a read of its content)."""
        return _grant(
            grantee,
            (RELAY_OUTBOX_ACTIONS, [self.outbox_table.table_arn]),
            (RELAY_MESSAGES_ACTIONS, [self.messages_table.table_arn]),
            (RELAY_PAYLOADS_ACTIONS, [self.payloads_table.table_arn]),
            (READ_OBJECT_ACTIONS, [self.payload_bucket.objects_arn]),
            (RELAY_QUEUE_ACTIONS, [self.queue.queue_arn]),
        )

    def grant_consume(self, grantee: iam.IGrantable) -> iam.Grant:
        """What a function consuming the queue through the consumer helper (ADR 0019) and an SQS event
        source mapping needs: the helper's status writes and the mapping's queue calls; and reading the
        payload objects that a message above 350,000 bytes points at (an extended-client consumer's
        `GetObject`, ADR 0023). Nothing lets a consumer delete an object: configure the Java library with
        `cleanupS3Payload=false` (a redrive or a second delivery still needs it)."""
        return _grant(
            grantee,
            (CONSUMER_MESSAGES_ACTIONS, [self.messages_table.table_arn]),
            (CONSUMER_QUEUE_ACTIONS, [self.queue.queue_arn]),
            (READ_OBJECT_ACTIONS, [self.payload_bucket.objects_arn]),
        )

    def add_consumer(
        self, function: lambda_.Function, *, batch_size: int = CONSUMER_BATCH_SIZE
    ) -> lambda_.EventSourceMapping:
        """Invoke `function` with the queue's messages, reporting partial batch failures (the consumer
        helper raises per record; Powertools turns that into `batchItemFailures`), and grant what it needs.
        Its timeout must fit in the queue's visibility timeout, and the helper's `processing_seconds` must
        be at least that timeout (ADR 0019)."""
        timeout = function.timeout.to_seconds() if function.timeout is not None else 3
        if timeout > QUEUE_VISIBILITY_SECONDS:
            raise ValueError(
                f"consumer {function.node.id}: a timeout of {timeout:g} s exceeds the queue's "
                f"{QUEUE_VISIBILITY_SECONDS} s visibility timeout, which Lambda refuses for an SQS mapping"
            )
        if not 1 <= batch_size <= CONSUMER_BATCH_SIZE:
            raise ValueError(
                f"consumer batch_size must be between 1 and {CONSUMER_BATCH_SIZE}, got {batch_size}"
            )
        grant = self.grant_consume(function)
        mapping = function.add_event_source_mapping(
            "Queue",
            event_source_arn=self.queue.queue_arn,
            batch_size=batch_size,
            report_batch_item_failures=True,
        )
        grant.apply_before(mapping)  # Lambda checks the role can read the queue on creation
        return mapping

    def grant_admin(self, grantee: iam.IGrantable) -> iam.Grant:
        """What the operator commands (`outbox status/stats/requeue/skip/clear-owed-ttl/dlq`, outbox/ops/)
        call. They run from an operator's machine, never from a function of this construct: grant it to a
        person's or a pipeline's role, or attach the stack's `OperatorPolicyArn` managed policy."""
        return _grant(grantee, *self._admin_grants())

    def admin_statements(self) -> list[iam.PolicyStatement]:
        """`grant_admin` as policy statements, for a managed policy."""
        return [
            iam.PolicyStatement(actions=list(actions), resources=resources)
            for actions, resources in self._admin_grants()
        ]

    def _admin_grants(self) -> list[tuple[tuple[str, ...], list[str]]]:
        return [
            (ADMIN_MESSAGES_ACTIONS, [self.messages_table.table_arn]),
            (ADMIN_PAYLOADS_ACTIONS, [self.payloads_table.table_arn]),
            (READ_OBJECT_ACTIONS, [self.payload_bucket.objects_arn]),
            (ADMIN_FAILED_INDEX_ACTIONS, [self.failed_index_arn]),
            (ADMIN_OUTBOX_ACTIONS, [self.outbox_table.table_arn]),
            (ADMIN_DLQ_ACTIONS, [self.dead_letter_queue.queue_arn]),
        ]

    def _table(
        self, id: str, definition: dict[str, object], config: StackConfig, *, ttl: bool
    ) -> dynamodb.Table:
        schema = _TableSchema(definition)
        table = dynamodb.Table(
            self,
            id,
            partition_key=schema.key("HASH"),
            sort_key=schema.optional_key("RANGE"),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE if ttl else None,
            stream=schema.stream_view,
            deletion_protection=config.removal_policy is RemovalPolicyName.RETAIN,
            removal_policy=removal_policy(config),
        )
        for index in schema.indexes:
            table.add_global_secondary_index(**index)
        return table


def _grant(grantee: iam.IGrantable, *grants: tuple[tuple[str, ...], list[str]]) -> iam.Grant:
    """One statement per (actions, resources) pair, combined into one `Grant`."""
    combined: iam.Grant | None = None
    for actions, resources in grants:
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=resources)
        combined = grant if combined is None else combined.combine(grant)
    if combined is None:
        raise ValueError("nothing to grant")
    return combined


class _TableSchema:
    """Reads a `CreateTable` definition from `outbox.core.schema` into CDK key and index arguments."""

    _TYPES: Final = {
        "S": dynamodb.AttributeType.STRING,
        "N": dynamodb.AttributeType.NUMBER,
        "B": dynamodb.AttributeType.BINARY,
    }
    _PROJECTIONS: Final = {
        "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
        "ALL": dynamodb.ProjectionType.ALL,
    }

    def __init__(self, definition: dict[str, object]) -> None:
        attributes = cast("list[dict[str, str]]", definition["AttributeDefinitions"])
        self._types = {item["AttributeName"]: item["AttributeType"] for item in attributes}
        self._keys = cast("list[dict[str, str]]", definition["KeySchema"])
        self._indexes = cast("list[dict[str, Any]]", definition.get("GlobalSecondaryIndexes", []))
        self._stream = cast("dict[str, Any] | None", definition.get("StreamSpecification"))

    @property
    def stream_view(self) -> dynamodb.StreamViewType | None:
        if not self._stream or not self._stream.get("StreamEnabled"):
            return None
        return dynamodb.StreamViewType(self._stream["StreamViewType"])

    def _attribute(self, name: str) -> dynamodb.Attribute:
        return dynamodb.Attribute(name=name, type=self._TYPES[self._types[name]])

    def optional_key(
        self, key_type: str, keys: list[dict[str, str]] | None = None
    ) -> dynamodb.Attribute | None:
        for key in self._keys if keys is None else keys:
            if key["KeyType"] == key_type:
                return self._attribute(key["AttributeName"])
        return None

    def key(self, key_type: str, keys: list[dict[str, str]] | None = None) -> dynamodb.Attribute:
        attribute = self.optional_key(key_type, keys)
        if attribute is None:
            raise ValueError(f"table definition has no {key_type} key")
        return attribute

    @property
    def indexes(self) -> list[dict[str, Any]]:
        return [
            {
                "index_name": index["IndexName"],
                "partition_key": self.key("HASH", index["KeySchema"]),
                "sort_key": self.optional_key("RANGE", index["KeySchema"]),
                "projection_type": self._PROJECTIONS[index["Projection"]["ProjectionType"]],
            }
            for index in self._indexes
        ]

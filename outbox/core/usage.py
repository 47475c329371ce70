"""What a function's AWS calls cost, counted live (issue #17): DynamoDB capacity units as DynamoDB reports
them, SQS requests as SQS bills them, and S3 requests (the claim check, ADR 0023) by their price class.

`UsageMeter.attach` hooks a botocore client. On DynamoDB it asks every operation that can report its
consumed capacity for it (`ReturnConsumedCapacity=TOTAL`: free, and the code under it is unchanged) and adds
up what the responses say; on SQS it counts each send's billed requests (one per started 64 KiB of the
request's payload: bodies and message attributes). A handler takes the totals once per invocation
(`take`) and publishes them as metrics; the dashboard prices them with the list prices below.

Not counted: a write refused by its condition or a cancelled transaction (DynamoDB bills them, but an
error response carries no `ConsumedCapacity`); the meter's figures are a floor of the bill, and the
benchmark (`bench/units.py`) counts those from the items themselves.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

Client = TypeVar("Client")

# On-demand list prices (us-east-1), the one place they are kept: https://aws.amazon.com/dynamodb/pricing/on-demand/
# and https://aws.amazon.com/sqs/pricing/ (standard queue, beyond the free tier). The benchmark prices its
# counts with them, and the dashboard its live ones.
PRICE_PER_WRITE_UNIT: Final = 0.625e-6
PRICE_PER_READ_UNIT: Final = 0.125e-6
PRICE_PER_SQS_REQUEST: Final = 0.40e-6
PRICE_PER_S3_WRITE_REQUEST: Final = 5.0e-6
"""S3 Standard PUT, COPY, POST and LIST requests: $0.005 per 1,000 (https://aws.amazon.com/s3/pricing/)."""
PRICE_PER_S3_READ_REQUEST: Final = 0.40e-6
"""S3 Standard GET, SELECT and all other requests (HEAD among them): $0.0004 per 1,000 (same page)."""
S3_WRITE_CLASS_OPERATIONS: Final = frozenset(
    {
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "ListObjects",
        "ListObjectsV2",
    }
)
"""The operations S3 bills at the PUT, COPY, POST, LIST price; the rest at the GET price."""
SQS_BILLING_CHUNK_BYTES: Final = 65_536
"""SQS bills each started 64 KiB of a request's payload as one request (https://aws.amazon.com/sqs/pricing/)."""
_READ_OPERATIONS: Final = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_SQS_SENDS: Final = frozenset({"SendMessage", "SendMessageBatch"})


@dataclass(frozen=True, slots=True)
class Usage:
    """Totals over some calls: DynamoDB write and read units as reported, SQS and S3 requests as billed."""

    write_units: float = 0.0
    read_units: float = 0.0
    sqs_requests: int = 0
    dynamodb_calls: int = 0
    sqs_calls: int = 0
    s3_write_requests: int = 0
    """S3 requests at the PUT, COPY, POST, LIST price (ingest's `PutObject`)."""
    s3_read_requests: int = 0
    """S3 requests at the GET and all-other price (the relay's `HeadObject`, a read's `GetObject`)."""

    @property
    def dollars(self) -> float:
        """What these calls cost at the list prices above."""
        return (
            self.write_units * PRICE_PER_WRITE_UNIT
            + self.read_units * PRICE_PER_READ_UNIT
            + self.sqs_requests * PRICE_PER_SQS_REQUEST
            + self.s3_write_requests * PRICE_PER_S3_WRITE_REQUEST
            + self.s3_read_requests * PRICE_PER_S3_READ_REQUEST
        )

    def per_million(self, messages: int) -> float:
        """Dollars per million messages, when these calls moved `messages` messages (0 when none)."""
        return self.dollars * 1_000_000 / messages if messages else 0.0


class UsageMeter:
    """Adds up the usage of the clients it is attached to; thread-safe (the relay's shard workers share
    one client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attached: set[int] = set()
        self._write = 0.0
        self._read = 0.0
        self._sqs_requests = 0
        self._dynamodb_calls = 0
        self._sqs_calls = 0
        self._s3_writes = 0
        self._s3_reads = 0

    def attach(self, client: Any) -> None:
        """Meter `client` (DynamoDB, SQS or S3) from now on; attaching one client twice changes nothing."""
        with self._lock:
            if id(client) in self._attached:
                return
            self._attached.add(id(client))
        service = client.meta.service_model.service_name
        if service == "dynamodb":
            client.meta.events.register("provide-client-params.dynamodb", self._ask_for_capacity)
            client.meta.events.register("after-call.dynamodb", self._count_dynamodb)
        elif service == "sqs":
            client.meta.events.register("before-parameter-build.sqs", self._remember_params)
            client.meta.events.register("after-call.sqs", self._count_sqs)
        elif service == "s3":
            client.meta.events.register("after-call.s3", self._count_s3)

    def metered(self, make: Callable[[], Client]) -> Callable[[], Client]:
        """`make` (a client factory), attaching what it returns: for a client made only when needed (the
        S3 client, which most invocations never create)."""

        def make_metered() -> Client:
            client = make()
            self.attach(client)
            return client

        return make_metered

    def take(self) -> Usage:
        """The totals since the last `take` (or the attachment), and start again from zero."""
        with self._lock:
            usage = Usage(
                self._write,
                self._read,
                self._sqs_requests,
                self._dynamodb_calls,
                self._sqs_calls,
                self._s3_writes,
                self._s3_reads,
            )
            self._write = self._read = 0.0
            self._sqs_requests = self._dynamodb_calls = self._sqs_calls = 0
            self._s3_writes = self._s3_reads = 0
        return usage

    # -- hooks ---------------------------------------------------------------------------------------

    @staticmethod
    def _ask_for_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members and "ReturnConsumedCapacity" not in params:
            params["ReturnConsumedCapacity"] = "TOTAL"

    @staticmethod
    def _remember_params(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["usage_params"] = dict(params)

    def _count_dynamodb(self, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
        write, read = capacity_units(model.name, parsed.get("ConsumedCapacity"))
        with self._lock:
            self._dynamodb_calls += 1
            self._write += write
            self._read += read

    def _count_sqs(self, parsed: Mapping[str, Any], model: Any, context: Mapping[str, Any], **_: Any) -> None:
        requests = 0
        if model.name in _SQS_SENDS and "Error" not in parsed:
            requests = billed_sqs_requests(model.name, context.get("usage_params", {}))
        with self._lock:
            self._sqs_calls += 1
            self._sqs_requests += requests or 1

    def _count_s3(self, model: Any, **_: Any) -> None:
        """One billed request per call, refused ones included (S3 bills most error responses too)."""
        with self._lock:
            if model.name in S3_WRITE_CLASS_OPERATIONS:
                self._s3_writes += 1
            else:
                self._s3_reads += 1


def capacity_units(operation: str, consumed: object) -> tuple[float, float]:
    """(write units, read units) of one response's `ConsumedCapacity`: one mapping, or a list of them (one
    per table) for batch and transaction operations. An entry that splits its units says which are which;
    otherwise the operation does (a read operation's `CapacityUnits` are read units)."""
    entries: Iterable[Any] = consumed if isinstance(consumed, list) else [consumed] if consumed else []
    write = read = 0.0
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if "WriteCapacityUnits" in entry or "ReadCapacityUnits" in entry:
            write += float(entry.get("WriteCapacityUnits", 0.0))
            read += float(entry.get("ReadCapacityUnits", 0.0))
        elif operation in _READ_OPERATIONS:
            read += float(entry.get("CapacityUnits", 0.0))
        else:
            write += float(entry.get("CapacityUnits", 0.0))
    return write, read


def billed_sqs_requests(operation: str, params: Mapping[str, Any]) -> int:
    """SQS's billed requests for one send: each started 64 KiB of the payload (bodies and attributes)."""
    entries = params.get("Entries", []) if operation == "SendMessageBatch" else [params]
    return sqs_requests(sum(sqs_entry_bytes(entry) for entry in entries))


def sqs_requests(payload_bytes: int) -> int:
    """Requests SQS bills for a request carrying `payload_bytes`: one per started 64 KiB, at least one."""
    return max(1, math.ceil(payload_bytes / SQS_BILLING_CHUNK_BYTES))


def sqs_entry_bytes(entry: Mapping[str, Any]) -> int:
    """A message's payload as SQS counts it: body plus each attribute's name, type and value."""
    size = len(str(entry.get("MessageBody", "")).encode("utf-8"))
    for name, attribute in (entry.get("MessageAttributes") or {}).items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        value_bytes = value if isinstance(value, bytes) else str(value).encode("utf-8")
        size += len(name.encode("utf-8")) + len(str(attribute.get("DataType", ""))) + len(value_bytes)
    return size

"""DynamoDB and SQS billing, computed from the items and payloads a client actually moves.

`Meter` hooks a botocore client: before each DynamoDB write it reads the current size of every item the
write touches (through a separate, unmetered client), after the call it reads the new size where the
request does not say it, and it bills the call by DynamoDB's rules:

- item size = Σ (attribute name length + value size); 1 KB write units per item, rounded up;
  transactional x2; `PutItem`/`UpdateItem` billed on the larger of the old and new item, `DeleteItem` on the
  old one; a write refused by its condition is billed too (on the item as it stands);
- 4 KB read units: a consistent read 1 per 4 KB, eventually consistent ½; `GetItem`/`BatchGetItem` per item
  (on the whole item, whatever the projection), `Query` on the total size of the items read, rounded up;
  a missing item or an empty `Query` still costs the minimum unit;
- SQS: one request per started 64 KiB of a request's payload (body + message attributes);
- S3 (the claim check, ADR 0023): one request per call, in the price class S3 bills it (`PutObject` with
  the PUT, COPY, POST, LIST requests; `HeadObject` and `GetObject` with GET and all other); the bytes an
  object call moves are counted for the latency model.

moto's `ReturnConsumedCapacity` is a constant (docs/design.md §8), so it cannot cross-check these figures.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from outbox.core.usage import S3_WRITE_CLASS_OPERATIONS, sqs_entry_bytes, sqs_requests
from outbox.data.item_size import item_size, number_size, value_size

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Re-exported: item sizes live with the data layer, SQS's billing with the live meter (outbox.core.usage).
__all__ = ["item_size", "number_size", "sqs_entry_bytes", "sqs_requests", "value_size"]

WRITE_UNIT_BYTES: Final = 1024
READ_UNIT_BYTES: Final = 4096
TRANSACTION_FACTOR: Final = 2
BATCH_GET_KEYS: Final = 100


# -- sizes -----------------------------------------------------------------------------------------


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# -- one metered call ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One API call as billed: units, SQS requests, and the item/payload bytes it moved."""

    service: str
    operation: str
    items: int
    """Actions of a transaction, keys of a batch, entries of an SQS batch, items a Query read; else 1."""
    write_units: float
    read_units: float
    sqs_requests: int
    bytes_moved: int
    failed: bool
    s3_write_requests: int = 0
    """S3 requests billed at the PUT, COPY, POST, LIST price."""
    s3_read_requests: int = 0
    """S3 requests billed at the GET and all-other price (`HeadObject` among them)."""


@dataclass
class OperationTotals:
    calls: int = 0
    items: int = 0
    write_units: float = 0.0
    read_units: float = 0.0
    sqs_requests: int = 0
    bytes_moved: int = 0
    failed: int = 0
    s3_write_requests: int = 0
    s3_read_requests: int = 0


def totals_by_operation(records: Iterable[CallRecord]) -> dict[str, OperationTotals]:
    totals: dict[str, OperationTotals] = defaultdict(OperationTotals)
    for record in records:
        total = totals[record.operation]
        total.calls += 1
        total.items += record.items
        total.write_units += record.write_units
        total.read_units += record.read_units
        total.sqs_requests += record.sqs_requests
        total.bytes_moved += record.bytes_moved
        total.failed += int(record.failed)
        total.s3_write_requests += record.s3_write_requests
        total.s3_read_requests += record.s3_read_requests
    return dict(sorted(totals.items()))


# -- the meter -------------------------------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]
"""(table, sorted key attributes as (name, scalar value)) — hashable."""


def _key(table: str, key: Mapping[str, Mapping[str, Any]]) -> Key:
    return table, tuple(sorted((name, str(next(iter(value.values())))) for name, value in key.items()))


@dataclass
class _WriteAction:
    kind: str  # Put | Update | Delete | ConditionCheck
    table: str
    key: dict[str, Any]
    new_item: dict[str, Any] | None = None


@dataclass
class Meter:
    """Bills every call of the clients it is attached to; `lookup` is an unmetered DynamoDB client used
    to learn item sizes (it must not be attached)."""

    lookup: DynamoDBClient
    records: list[CallRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_names: dict[str, list[str]] = field(default_factory=dict)

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        if service == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb", self._before_dynamodb)
            client.meta.events.register("after-call.dynamodb", self._after_dynamodb)
        elif service == "sqs":
            client.meta.events.register("before-parameter-build.sqs", self._before_sqs)
            client.meta.events.register("after-call.sqs", self._after_sqs)
        elif service == "s3":
            client.meta.events.register("before-parameter-build.s3", self._before_s3)
            client.meta.events.register("after-call.s3", self._after_s3)

    def reset(self) -> list[CallRecord]:
        with self._lock:
            records, self.records = self.records, []
        return records

    def _record(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)

    # -- DynamoDB ----------------------------------------------------------------------------------

    def _before_dynamodb(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params
        actions = self._write_actions(model.name, params)
        if actions:
            context["bench_old_sizes"] = self._sizes([(a.table, a.key) for a in actions])

    def _after_dynamodb(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        params: dict[str, Any] = context.get("bench_params", {})
        failed = "Error" in parsed
        operation = model.name
        if operation in {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}:
            self._record(self._bill_write(operation, params, context.get("bench_old_sizes", {}), failed))
        elif operation == "GetItem":
            consistent = bool(params.get("ConsistentRead"))
            size = self._full_size(params["TableName"], params["Key"], parsed.get("Item"), params)
            units = read_units(size, consistent=consistent)
            self._record(CallRecord("dynamodb", operation, 1, 0.0, units, 0, size, failed))
        elif operation == "BatchGetItem":
            self._record(self._bill_batch_get(params, parsed, failed))
        elif operation == "Query":
            items = parsed.get("Items", [])
            size = sum(item_size(item) for item in items)
            units = read_units(size, consistent=bool(params.get("ConsistentRead")))
            self._record(CallRecord("dynamodb", operation, len(items), 0.0, units, 0, size, failed))
        else:
            self._record(CallRecord("dynamodb", operation, 1, 0.0, 0.0, 0, 0, failed))

    def _write_actions(self, operation: str, params: Mapping[str, Any]) -> list[_WriteAction]:
        if operation == "PutItem":
            table = params["TableName"]
            item = dict(params["Item"])
            return [_WriteAction("Put", table, self._key_of(table, item), item)]
        if operation in {"UpdateItem", "DeleteItem"}:
            return [_WriteAction(operation.removesuffix("Item"), params["TableName"], dict(params["Key"]))]
        if operation == "TransactWriteItems":
            actions: list[_WriteAction] = []
            for entry in params["TransactItems"]:
                (kind, body), *_ = entry.items()
                if kind == "Put":
                    item = dict(body["Item"])
                    actions.append(
                        _WriteAction(kind, body["TableName"], self._key_of(body["TableName"], item), item)
                    )
                else:
                    actions.append(_WriteAction(kind, body["TableName"], dict(body["Key"])))
            return actions
        return []

    def _bill_write(
        self, operation: str, params: Mapping[str, Any], old_sizes: Mapping[Key, int], failed: bool
    ) -> CallRecord:
        actions = self._write_actions(operation, params)
        new_sizes: dict[Key, int] = {}
        updated = [(a.table, a.key) for a in actions if a.kind == "Update"]
        if updated and not failed:
            new_sizes = self._sizes(updated)
        units = 0
        moved = 0
        for action in actions:
            key = _key(action.table, action.key)
            old = old_sizes.get(key, 0)
            if action.kind == "Put":
                new = item_size(action.new_item)
            elif action.kind == "Update":
                new = new_sizes.get(key, old)
            else:  # Delete, ConditionCheck: the item as it stands
                new = old
            size = max(old, new)
            units += write_units(size)
            moved += new if action.kind in {"Put", "Update"} else 0
        factor = TRANSACTION_FACTOR if operation == "TransactWriteItems" else 1
        return CallRecord("dynamodb", operation, len(actions), float(units * factor), 0.0, 0, moved, failed)

    def _bill_batch_get(
        self, params: Mapping[str, Any], parsed: Mapping[str, Any], failed: bool
    ) -> CallRecord:
        units = 0.0
        moved = 0
        keys = 0
        for table, request in params.get("RequestItems", {}).items():
            consistent = bool(request.get("ConsistentRead"))
            requested = [dict(key) for key in request.get("Keys", [])]
            keys += len(requested)
            sizes = self._sizes([(table, key) for key in requested])
            unprocessed = {
                _key(table, key)
                for key in (parsed.get("UnprocessedKeys", {}).get(table, {}) or {}).get("Keys", [])
            }
            for key in requested:
                marker = _key(table, key)
                if marker in unprocessed:
                    continue
                units += read_units(sizes.get(marker, 0), consistent=consistent)
                moved += sizes.get(marker, 0)
        return CallRecord("dynamodb", "BatchGetItem", keys, 0.0, units, 0, moved, failed)

    def _full_size(
        self, table: str, key: Mapping[str, Any], item: Mapping[str, Any] | None, params: Mapping[str, Any]
    ) -> int:
        if item is not None and "ProjectionExpression" not in params and "AttributesToGet" not in params:
            return item_size(item)
        return self._sizes([(table, dict(key))]).get(_key(table, key), 0)

    # -- looking items up (unmetered) --------------------------------------------------------------

    def _key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        if table not in self._key_names:
            schema = self.lookup.describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_names[table] = [element["AttributeName"] for element in schema]
        return {name: item[name] for name in self._key_names[table]}

    def _sizes(self, keys: Sequence[tuple[str, dict[str, Any]]]) -> dict[Key, int]:
        """Current sizes of the given items (absent ones are left out), read consistently."""
        unique: dict[Key, tuple[str, dict[str, Any]]] = {}
        for table, key in keys:
            unique.setdefault(_key(table, key), (table, key))
        pending = list(unique.values())
        sizes: dict[Key, int] = {}
        for start in range(0, len(pending), BATCH_GET_KEYS):
            request: dict[str, Any] = {}
            for table, key in pending[start : start + BATCH_GET_KEYS]:
                request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
            while request:
                response = self.lookup.batch_get_item(RequestItems=request)
                for table, items in response.get("Responses", {}).items():
                    for item in items:
                        found = dict(item)
                        sizes[_key(table, self._key_of(table, found))] = item_size(found)
                request = dict(response.get("UnprocessedKeys") or {})
        return sizes

    # -- SQS ---------------------------------------------------------------------------------------

    def _before_sqs(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params

    def _after_sqs(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        failed = "Error" in parsed
        params: dict[str, Any] = context.get("bench_params", {})
        if model.name == "SendMessageBatch":
            entries = params.get("Entries", [])
            size = sum(sqs_entry_bytes(entry) for entry in entries)
            self._record(
                CallRecord("sqs", model.name, len(entries), 0.0, 0.0, sqs_requests(size), size, failed)
            )
        elif model.name == "SendMessage":
            size = sqs_entry_bytes(params)
            self._record(CallRecord("sqs", model.name, 1, 0.0, 0.0, sqs_requests(size), size, failed))
        else:
            self._record(CallRecord("sqs", model.name, 1, 0.0, 0.0, 1, 0, failed))

    # -- S3 ----------------------------------------------------------------------------------------

    def _before_s3(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = params.get("Body")
        context["bench_s3_bytes"] = len(body) if isinstance(body, bytes | bytearray | str) else 0

    def _after_s3(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        failed = "Error" in parsed
        operation = model.name
        moved = int(context.get("bench_s3_bytes", 0))
        if operation == "GetObject" and not failed:
            moved = int(parsed.get("ContentLength", 0) or 0)
        write_class = operation in S3_WRITE_CLASS_OPERATIONS
        self._record(
            CallRecord(
                "s3",
                operation,
                1,
                0.0,
                0.0,
                0,
                moved,
                failed,
                s3_write_requests=int(write_class),
                s3_read_requests=int(not write_class),
            )
        )

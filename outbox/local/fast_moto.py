"""Make moto's DynamoDB `TransactWriteItems` snapshot only the items a transaction touches.

moto 5.2.5 (`DynamoDBBackend.transact_write_items`) deep-copies every table named in a transaction, once per
action, before applying anything, so that it can put the copies back if the transaction is cancelled. A
100-action transaction on a 2,000-item table costs seconds (docs/design.md §8, "what moto does
not show"). This module keeps moto's own per-action code and replaces only that snapshot and restore:

- while the patched method runs, `copy.deepcopy(<Table>)` inside `moto.dynamodb.models` returns the live
  table (a stand-in for that module's `copy` global, active only in the calling thread and call), so moto's
  own "restore" reassigns the live table to itself and does nothing;
- before delegating, the wrapper deep-copies just the items the actions address (by table and key, first
  snapshot wins), notes which range-key hash buckets did not exist (moto's `get_item` creates empty ones
  through a `defaultdict`), the dict order of a container an existing item may be deleted from, and each
  stream shard's record list and length;
- when moto restores (every exception except `TransactWriteSingleOpException`, which moto raises without
  restoring), the wrapper puts those items back in their original order, removes the ones that did not
  exist and the buckets it created, and truncates the stream records the cancelled actions appended.

Secondary indexes need nothing: moto derives them from the table items on every query or scan. Only
tables that moto itself would restore are restored (those named by plain table name, not by ARN).

Test and local infrastructure only (ADR 0011); never imported by the Lambda handlers. Installing checks
fingerprints of the moto functions this relies on and raises `MotoInternalsChanged` if they differ from
the reviewed moto version.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

import moto
import moto.dynamodb.models as moto_models
from moto.dynamodb.exceptions import TransactWriteSingleOpException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table

__all__ = [
    "MOTO_FINGERPRINTS",
    "REVIEWED_MOTO_VERSION",
    "MotoInternalsChanged",
    "check_moto_internals",
    "fast_transactions",
    "fast_transactions_installed",
    "install_fast_transactions",
    "mismatched",
    "uninstall_fast_transactions",
]

REVIEWED_MOTO_VERSION: Final = "5.2.5"

# sha256 of `inspect.getsource(...)` of every moto function whose behaviour this patch depends on: the
# transaction itself (what it snapshots, when it restores) and the write path it drives (which dict slots a
# Put/Update/Delete/ConditionCheck can change, and the stream records it appends).
MOTO_FINGERPRINTS: Final[Mapping[str, str]] = {
    "backend.transact_write_items": "81db2cb7d94e39c90b3a2077e1f4bb41a449c558ef9b1b1e2910fdaa39978ad4",
    "backend.get_table": "a738146035fc206b81e0659a004dcc62ae70eb356ef7c5ab771ba68bdd2d7ab0",
    "backend.get_keys_value": "1f948797496ddc2cd4e4752e29e470d19ce757ca3406e07fed6bd90b331c1caa",
    "backend.get_item": "290b95c46b38bc5ac8079668e9c449bba9b6b26f4a2872d80ca262115023e189",
    "backend.put_item": "f5d9a5042c77b89e5f4c88b5884f7966b9dccd95b8b04090ee9e07afc5eea675",
    "backend.update_item": "218984588dd689a5de81678ce11e6a40d05c91e7b6c21b44c4ed4122fe74aa9f",
    "backend.delete_item": "083a4bb1af18f6fd2feef40195a4c9c803da66cb2cacd14f87916c6e76930ea5",
    "table.put_item": "de23933013ef842639046c19bcf7e418bce0474d810f6719368be4cedce11d47",
    "table.get_item": "b08e98fe37b7e5836afe03b010d637ef50df5dea6cbecd9cf8816eef326a21cd",
    "table.delete_item": "1594f7b07616c8cb8cdf0fbf58d6f54eeac83f25d7ac7b14e832a08e10efd8f9",
    "stream_shard.add": "357dc6da267e5dd7d46e18ee25d14b232a98679677906a2f02e4d454d1f11e03",
}

_FINGERPRINTED: Final[Mapping[str, Callable[..., Any]]] = {
    "backend.transact_write_items": DynamoDBBackend.transact_write_items,
    "backend.get_table": DynamoDBBackend.get_table,
    "backend.get_keys_value": DynamoDBBackend.get_keys_value,
    "backend.get_item": DynamoDBBackend.get_item,
    "backend.put_item": DynamoDBBackend.put_item,
    "backend.update_item": DynamoDBBackend.update_item,
    "backend.delete_item": DynamoDBBackend.delete_item,
    "table.put_item": Table.put_item,
    "table.get_item": Table.get_item,
    "table.delete_item": Table.delete_item,
    "stream_shard.add": StreamShard.add,
}

MAX_ACTIONS: Final = 100  # moto raises TooManyTransactionsException above this, before touching anything

_ORIGINAL_TRANSACT: Final[Callable[[DynamoDBBackend, list[dict[str, Any]]], None]] = (
    DynamoDBBackend.transact_write_items
)
_REAL_COPY_MODULE: Final = copy
_MISSING: Final = object()
_install_lock = threading.Lock()

# True while the patched method runs moto's original in this thread: only then is a Table not copied.
_share_tables: ContextVar[bool] = ContextVar("fast_moto_share_tables", default=False)


class MotoInternalsChanged(RuntimeError):
    """The installed moto is not the one the fast-transaction patch was reviewed against."""


def _fingerprint(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def mismatched(functions: Mapping[str, Callable[..., Any]], expected: Mapping[str, str]) -> list[str]:
    """The names in `functions` whose source is not the reviewed one (sorted)."""
    try:
        return sorted(
            name for name, function in functions.items() if _fingerprint(function) != expected.get(name)
        )
    except (OSError, TypeError) as exc:  # no source available (e.g. a zipped or compiled-only install)
        raise MotoInternalsChanged(f"cannot read moto's source to verify it: {exc}") from exc


def check_moto_internals(expected: Mapping[str, str] = MOTO_FINGERPRINTS) -> None:
    """Raise `MotoInternalsChanged` unless every function the patch relies on is byte-for-byte the reviewed
    one, and `moto.dynamodb.models` still uses the `copy` module for its table snapshot."""
    changed = mismatched(_FINGERPRINTED, expected)
    copy_global = getattr(moto_models, "copy", None)
    if copy_global is not _REAL_COPY_MODULE and not isinstance(copy_global, _TableSharingCopy):
        changed.append("moto.dynamodb.models.copy")
    if changed:
        raise MotoInternalsChanged(
            f"moto {moto.__version__} differs from moto {REVIEWED_MOTO_VERSION}, which "
            f"outbox.local.fast_moto was reviewed against, in: {', '.join(changed)}. Re-read "
            "backend.transact_write_items and the write path, adapt fast_moto.py, rerun "
            "tests/test_fast_moto.py, then update MOTO_FINGERPRINTS (or pin moto back)."
        )


class _TableSharingCopy:
    """Stands in for the `copy` module inside `moto.dynamodb.models` while the patch is installed.

    `deepcopy(table)` returns the live table while `_share_tables` is set (that is, inside the patched
    `transact_write_items`, in that thread); everything else is the real `copy` module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_REAL_COPY_MODULE, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, Table) and _share_tables.get():
            return value
        return _REAL_COPY_MODULE.deepcopy(value, memo)


@dataclass
class _Container:
    """One dict that holds items: a hash-only table's `items`, or one hash bucket of a range-key table."""

    mapping: dict[Any, Any]
    before: dict[Any, Any] = field(default_factory=dict)  # key -> deep copy of the item, or _MISSING
    order: list[Any] | None = None  # key order, kept when an existing item may be deleted

    def remember(self, key: DynamoType, *, may_delete: bool) -> None:
        if key not in self.before:
            self.before[key] = copy.deepcopy(self.mapping[key]) if key in self.mapping else _MISSING
        if may_delete and self.before[key] is not _MISSING and self.order is None:
            self.order = list(self.mapping)

    def restore(self) -> None:
        reinserted = False
        for key, item in self.before.items():
            if item is _MISSING:
                self.mapping.pop(key, None)
            else:
                reinserted = reinserted or key not in self.mapping
                self.mapping[key] = item  # an existing key keeps its place
        if reinserted and self.order is not None:  # a deleted item goes back where it was
            current = dict(self.mapping)
            self.mapping.clear()
            for key in self.order:
                if key in current:
                    self.mapping[key] = current.pop(key)
            self.mapping.update(current)


@dataclass
class _TableSnapshot:
    table: Table
    containers: dict[Any, _Container] = field(default_factory=dict)  # hash key (range tables) or None
    new_buckets: set[DynamoType] = field(default_factory=set)
    stream: tuple[StreamShard, list[Any], int] | None = None

    @classmethod
    def of(cls, table: Table) -> _TableSnapshot:
        shard = table.stream_shard
        return cls(table, stream=None if shard is None else (shard, shard.items, len(shard.items)))

    def remember(self, hash_key: DynamoType, range_key: DynamoType | None, *, may_delete: bool) -> None:
        """`range_key` is None exactly when the table has no range key."""
        items: dict[Any, Any] = self.table.items
        if range_key is None:
            self.containers.setdefault(None, _Container(items)).remember(hash_key, may_delete=may_delete)
        elif hash_key in self.new_buckets:
            pass
        elif hash_key not in items:  # `in` does not create the bucket; moto's get_item will
            self.new_buckets.add(hash_key)
        else:
            container = self.containers.setdefault(hash_key, _Container(items[hash_key]))
            container.remember(range_key, may_delete=may_delete)

    def restore(self) -> None:
        for container in self.containers.values():
            container.restore()
        for hash_key in self.new_buckets:
            self.table.items.pop(hash_key, None)  # holds only items this transaction created
        if self.stream is not None:
            shard, records, length = self.stream
            del records[length:]
            shard.items = records


def _take_snapshot(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[_TableSnapshot]:
    """Copy what the actions can change, in the tables moto would restore. Anything malformed is skipped:
    moto rejects that action before it writes."""
    restorable: dict[int, _TableSnapshot] = {}
    for action in transact_items:
        try:
            table_name = next(iter(action.values())).get("TableName")
        except Exception:  # noqa: S112 - moto's own snapshot loop raises the same error next
            continue
        if isinstance(table_name, str) and table_name in backend.tables:
            table = backend.tables[table_name]
            restorable.setdefault(id(table), _TableSnapshot.of(table))
    for action in transact_items:
        try:
            op_type, op = next(iter(action.items()))
            table = backend.get_table(op["TableName"])
            snapshot = restorable.get(id(table))
            if snapshot is None:
                continue
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_attr = table.range_key_attr
            range_key = None if range_attr is None else DynamoType(key[range_attr])
            snapshot.remember(
                hash_key, range_key, may_delete=op_type not in {"Put", "Update", "ConditionCheck"}
            )
        except Exception:  # noqa: S112 - a key moto cannot parse or hash: moto fails the action before writing
            continue
    return list(restorable.values())


def _fast_transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > MAX_ACTIONS:
        _ORIGINAL_TRANSACT(self, transact_items)  # raises TooManyTransactionsException
        return
    snapshots = _take_snapshot(self, transact_items)
    token = _share_tables.set(True)
    try:
        _ORIGINAL_TRANSACT(self, transact_items)
    except TransactWriteSingleOpException:
        raise  # moto raises this one without restoring anything
    except Exception:
        for snapshot in snapshots:
            snapshot.restore()
        raise
    finally:
        _share_tables.reset(token)


def fast_transactions_installed() -> bool:
    return DynamoDBBackend.transact_write_items is _fast_transact_write_items


def install_fast_transactions() -> None:
    """Patch moto's DynamoDB backend (in this process, `mock_aws()` and an in-process moto server alike) so
    that `TransactWriteItems` snapshots only the items it touches. Idempotent."""
    with _install_lock:
        if fast_transactions_installed():
            return
        check_moto_internals()
        setattr(moto_models, "copy", _TableSharingCopy())  # noqa: B010 - a module global, typed as a module
        setattr(DynamoDBBackend, "transact_write_items", _fast_transact_write_items)  # noqa: B010


def uninstall_fast_transactions() -> None:
    """Put moto's own `transact_write_items` back. Idempotent."""
    with _install_lock:
        setattr(DynamoDBBackend, "transact_write_items", _ORIGINAL_TRANSACT)  # noqa: B010
        setattr(moto_models, "copy", _REAL_COPY_MODULE)  # noqa: B010


@contextmanager
def fast_transactions() -> Iterator[None]:
    """Install the patch for the block; leave it as it was found afterwards."""
    was_installed = fast_transactions_installed()
    install_fast_transactions()
    try:
        yield
    finally:
        if not was_installed:
            uninstall_fast_transactions()

"""The strict-contract hook (docs/design.md §8): refuse, as AWS would, the calls that moto lets through.

moto accepts a 64-character `ClientRequestToken`, eleven message attributes, a NUL in a body, a FIFO group
id with spaces, a deduplication id on a standard queue, and a key lookup (`GetItem`, `DeleteItem`,
`BatchGetItem`, a transaction's `ConditionCheck` or `Delete`) with a partition key over 2,048 bytes or a sort
key over 1,024. Installed on a client, this hook checks every call's parameters before they are sent and
raises the `ClientError` AWS would return, with the code as botocore reports AWS's answer: SQS errors in
SQS's own spelling (`AWS.SimpleQueueService.BatchRequestTooLong`, see `outbox.core.sqs_errors`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import ClientError

from outbox.core.schema import OUTBOX_SORT_KEY
from outbox.core.sqs_errors import query_error_code

MAX_TOKEN_LENGTH: Final = 36
MAX_TRANSACTION_ACTIONS: Final = 100
MAX_MESSAGE_ATTRIBUTES: Final = 10
MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 1_048_576
_SQS_BODY = re.compile("[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_FIFO_ID = re.compile(r"[!-~]{1,128}")
_BATCH_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
MAX_PARTITION_KEY_BYTES: Final = 2048
MAX_SORT_KEY_BYTES: Final = 1024
_HASHKEY_TOO_LONG: Final = (
    # AWS's wording, missing space included.
    "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of"
    f"{MAX_PARTITION_KEY_BYTES} bytes"
)
_RANGEKEY_TOO_LONG: Final = (
    "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
    f"limit of {MAX_SORT_KEY_BYTES} bytes"
)
_SORT_KEYS: Final = frozenset({OUTBOX_SORT_KEY})
"""The sort keys of the project's tables. Any other key attribute is held to the partition-key limit, the
looser one: the hook may miss a refusal there, never invent one."""


class ContractViolation(ClientError):
    def __init__(self, operation: str, code: str, message: str, **error: str) -> None:
        response: Any = {"Error": {"Code": code, "Message": f"[strict contract] {message}", **error}}
        super().__init__(response, operation)


class SqsContractViolation(ContractViolation):
    """As botocore reports a real SQS error: `Code` as SQS spells it on the wire (`x-amzn-query-error`),
    the modeled name in `QueryErrorCode`."""

    def __init__(self, operation: str, name: str, message: str) -> None:
        super().__init__(operation, query_error_code(name), message, QueryErrorCode=name, Type="Sender")


def install_strict_contract(client: Any) -> Callable[[], None]:
    """Check every call `client` makes; returns a function that removes the hook."""
    service = client.meta.service_model.service_id.hyphenize()
    checks: Mapping[str, Callable[[dict[str, Any]], None]] = {
        "TransactWriteItems": _check_transaction,
        "GetItem": _check_key_of("GetItem"),
        "DeleteItem": _check_key_of("DeleteItem"),
        "UpdateItem": _check_key_of("UpdateItem"),
        "BatchGetItem": _check_batch_get,
        "SendMessage": _check_send_message,
        "SendMessageBatch": _check_send_batch,
    }

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        check = checks.get(model.name)
        if check is not None:
            check(params)

    event = f"before-parameter-build.{service}"
    client.meta.events.register(event, hook)
    return lambda: client.meta.events.unregister(event, hook)


def _check_transaction(params: dict[str, Any]) -> None:
    token = params.get("ClientRequestToken")
    if token is not None and not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        raise ContractViolation(
            "TransactWriteItems", "ValidationException", f"ClientRequestToken length {len(token)} > 36"
        )
    if len(params.get("TransactItems", [])) > MAX_TRANSACTION_ACTIONS:
        raise ContractViolation("TransactWriteItems", "ValidationException", "more than 100 actions")
    for action in params.get("TransactItems", []):
        for kind in ("ConditionCheck", "Delete", "Update"):
            if kind in action:
                _check_key("TransactWriteItems", action[kind].get("Key", {}))


def _check_key_of(operation: str) -> Callable[[dict[str, Any]], None]:
    return lambda params: _check_key(operation, params.get("Key", {}))


def _check_batch_get(params: dict[str, Any]) -> None:
    for request in params.get("RequestItems", {}).values():
        for key in request.get("Keys", []):
            _check_key("BatchGetItem", key)


def _check_key(operation: str, key: Mapping[str, Any]) -> None:
    """DynamoDB's key limits, checked before the table is even looked at: partition key at most 2,048
    bytes, sort key at most 1,024 (a lookup by a longer key is a `ValidationException`, not a miss)."""
    for name, value in key.items():
        limit, message = (
            (MAX_SORT_KEY_BYTES, _RANGEKEY_TOO_LONG)
            if name in _SORT_KEYS and len(key) > 1
            else (MAX_PARTITION_KEY_BYTES, _HASHKEY_TOO_LONG)
        )
        if _key_bytes(value) > limit:
            raise ContractViolation(operation, "ValidationException", message)


def _key_bytes(value: Mapping[str, Any]) -> int:
    if "S" in value:
        return len(str(value["S"]).encode("utf-8"))
    if "B" in value:
        raw = value["B"]
        return len(raw.encode("utf-8") if isinstance(raw, str) else bytes(raw))
    return 0  # numbers: at most 38 digits, far below either limit


def _check_send_message(params: dict[str, Any]) -> None:
    _check_sqs_message("SendMessage", params, fifo=str(params.get("QueueUrl", "")).endswith(".fifo"))


def _check_send_batch(params: dict[str, Any]) -> None:
    entries: Sequence[dict[str, Any]] = params.get("Entries", [])
    fifo = str(params.get("QueueUrl", "")).endswith(".fifo")
    if not 1 <= len(entries) <= MAX_BATCH_ENTRIES:
        raise SqsContractViolation(
            "SendMessageBatch", "TooManyEntriesInBatchRequest", f"{len(entries)} entries"
        )
    ids = [entry.get("Id", "") for entry in entries]
    if len(set(ids)) != len(ids):
        raise SqsContractViolation("SendMessageBatch", "BatchEntryIdsNotDistinct", "duplicate entry ids")
    if not all(_BATCH_ENTRY_ID.fullmatch(entry_id) for entry_id in ids):
        raise SqsContractViolation("SendMessageBatch", "InvalidBatchEntryId", "bad entry id")
    total = sum(_message_size(entry) for entry in entries)
    if total > MAX_BATCH_BYTES:
        raise SqsContractViolation("SendMessageBatch", "BatchRequestTooLong", f"batch is {total} bytes")
    for entry in entries:
        _check_sqs_message("SendMessageBatch", entry, fifo=fifo)


def _check_sqs_message(operation: str, message: Mapping[str, Any], *, fifo: bool) -> None:
    body = message.get("MessageBody", "")
    if not body or not _SQS_BODY.fullmatch(body):
        raise SqsContractViolation(
            operation, "InvalidMessageContents", "body is empty or has characters SQS refuses"
        )
    attributes = message.get("MessageAttributes", {})
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise SqsContractViolation(
            operation, "InvalidParameterValue", f"{len(attributes)} message attributes > 10"
        )
    group, dedup = message.get("MessageGroupId"), message.get("MessageDeduplicationId")
    if fifo and group is None:
        raise SqsContractViolation(operation, "MissingParameter", "FIFO message without MessageGroupId")
    if not fifo and dedup is not None:
        raise SqsContractViolation(
            operation, "InvalidParameterValue", "MessageDeduplicationId is only valid on FIFO queues"
        )
    for name, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
        if value is not None and not _FIFO_ID.fullmatch(value):
            raise SqsContractViolation(operation, "InvalidParameterValue", f"bad {name}")


def _message_size(message: Mapping[str, Any]) -> int:
    size = len(message.get("MessageBody", "").encode("utf-8"))
    for name, value in message.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(value.get("StringValue", "").encode())
    return size

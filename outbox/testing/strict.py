"""The strict-contract hook (DESIGN §8): refuse, as AWS would, the calls that moto lets through.

moto accepts a 64-character `ClientRequestToken`, eleven message attributes, a NUL in a body, a FIFO group
id with spaces, a deduplication id on a standard queue. Installed on a client, this hook checks every call's
parameters before they are sent and raises the `ClientError` AWS would return.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import ClientError

MAX_TOKEN_LENGTH: Final = 36
MAX_TRANSACTION_ACTIONS: Final = 100
MAX_MESSAGE_ATTRIBUTES: Final = 10
MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 1_048_576
_SQS_BODY = re.compile("[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_FIFO_ID = re.compile(r"[!-~]{1,128}")
_BATCH_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


class ContractViolation(ClientError):
    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__({"Error": {"Code": code, "Message": f"[strict contract] {message}"}}, operation)


def install_strict_contract(client: Any) -> Callable[[], None]:
    """Check every call `client` makes; returns a function that removes the hook."""
    service = client.meta.service_model.service_id.hyphenize()
    checks: Mapping[str, Callable[[dict[str, Any]], None]] = {
        "TransactWriteItems": _check_transaction,
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


def _check_send_message(params: dict[str, Any]) -> None:
    _check_sqs_message("SendMessage", params, fifo=str(params.get("QueueUrl", "")).endswith(".fifo"))


def _check_send_batch(params: dict[str, Any]) -> None:
    entries: Sequence[dict[str, Any]] = params.get("Entries", [])
    fifo = str(params.get("QueueUrl", "")).endswith(".fifo")
    if not 1 <= len(entries) <= MAX_BATCH_ENTRIES:
        raise ContractViolation("SendMessageBatch", "TooManyEntriesInBatchRequest", f"{len(entries)} entries")
    ids = [entry.get("Id", "") for entry in entries]
    if len(set(ids)) != len(ids):
        raise ContractViolation("SendMessageBatch", "BatchEntryIdsNotDistinct", "duplicate entry ids")
    if not all(_BATCH_ENTRY_ID.fullmatch(entry_id) for entry_id in ids):
        raise ContractViolation("SendMessageBatch", "InvalidBatchEntryId", "bad entry id")
    total = sum(_message_size(entry) for entry in entries)
    if total > MAX_BATCH_BYTES:
        raise ContractViolation("SendMessageBatch", "BatchRequestTooLong", f"batch is {total} bytes")
    for entry in entries:
        _check_sqs_message("SendMessageBatch", entry, fifo=fifo)


def _check_sqs_message(operation: str, message: Mapping[str, Any], *, fifo: bool) -> None:
    body = message.get("MessageBody", "")
    if not body or not _SQS_BODY.fullmatch(body):
        raise ContractViolation(
            operation, "InvalidMessageContents", "body is empty or has characters SQS refuses"
        )
    attributes = message.get("MessageAttributes", {})
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise ContractViolation(
            operation, "InvalidParameterValue", f"{len(attributes)} message attributes > 10"
        )
    group, dedup = message.get("MessageGroupId"), message.get("MessageDeduplicationId")
    if fifo and group is None:
        raise ContractViolation(operation, "MissingParameter", "FIFO message without MessageGroupId")
    if not fifo and dedup is not None:
        raise ContractViolation(
            operation, "InvalidParameterValue", "MessageDeduplicationId is only valid on FIFO queues"
        )
    for name, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
        if value is not None and not _FIFO_ID.fullmatch(value):
            raise ContractViolation(operation, "InvalidParameterValue", f"bad {name}")


def _message_size(message: Mapping[str, Any]) -> int:
    size = len(message.get("MessageBody", "").encode("utf-8"))
    for name, value in message.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(value.get("StringValue", "").encode())
    return size

"""SQS error codes, one spelling: the one place that says which SQS error a `ClientError` is.

SQS speaks JSON now but keeps the error codes of its old query protocol. botocore takes `Error.Code` from
the `x-amzn-query-error` header, so real SQS answers `AWS.SimpleQueueService.BatchRequestTooLong`,
`AWS.SimpleQueueService.NonExistentQueue` (for `QueueDoesNotExist`) or `QueueAlreadyExists` (for
`QueueNameExists`), while a fake that skips the header answers the bare modeled name. Code that compares
the raw `Code` with one spelling silently misses the other: a malformed batch then looks like a lost call,
rolled back and retried for ever. Everything in the outbox that asks which SQS error it got asks
`sqs_error_code`, and compares with the modeled name (botocore's exception class name, the name in the SQS
API reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from botocore.exceptions import ClientError

QUERY_PREFIX: Final = "AWS.SimpleQueueService."

QUERY_ERROR_CODES: Final[Mapping[str, str]] = {
    # Modeled name -> the code SQS sends in `x-amzn-query-error` (and botocore puts in `Error.Code`), for
    # every modeled SQS error whose two spellings differ (aws-sdk-go `service/sqs/errors.go`).
    "BatchEntryIdsNotDistinct": f"{QUERY_PREFIX}BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": f"{QUERY_PREFIX}BatchRequestTooLong",
    "EmptyBatchRequest": f"{QUERY_PREFIX}EmptyBatchRequest",
    "InvalidBatchEntryId": f"{QUERY_PREFIX}InvalidBatchEntryId",
    "TooManyEntriesInBatchRequest": f"{QUERY_PREFIX}TooManyEntriesInBatchRequest",
    "MessageNotInflight": f"{QUERY_PREFIX}MessageNotInflight",
    "PurgeQueueInProgress": f"{QUERY_PREFIX}PurgeQueueInProgress",
    "QueueDeletedRecently": f"{QUERY_PREFIX}QueueDeletedRecently",
    "QueueDoesNotExist": f"{QUERY_PREFIX}NonExistentQueue",
    "UnsupportedOperation": f"{QUERY_PREFIX}UnsupportedOperation",
    "QueueNameExists": "QueueAlreadyExists",
    "KmsAccessDenied": "KMS.AccessDeniedException",
    "KmsDisabled": "KMS.DisabledException",
    "KmsInvalidKeyUsage": "KMS.InvalidKeyUsageException",
    "KmsInvalidState": "KMS.InvalidStateException",
    "KmsNotFound": "KMS.NotFoundException",
    "KmsOptInRequired": "KMS.OptInRequired",
    "KmsThrottled": "KMS.ThrottlingException",
}
"""The other modeled errors (`InvalidMessageContents`, `RequestThrottled`, `OverLimit`, ...) and the common
ones (`InvalidParameterValue`, `MissingParameter`) are spelled the same both ways."""

_MODELED_NAMES: Final[Mapping[str, str]] = {code: name for name, code in QUERY_ERROR_CODES.items()}


def modeled_name(code: str) -> str:
    """The modeled name of an SQS error code in either spelling; an unknown prefixed code loses its
    prefix, anything else is returned as it is."""
    return _MODELED_NAMES.get(code) or code.removeprefix(QUERY_PREFIX)


def sqs_error_code(exc: ClientError) -> str:
    """Which SQS error this is, by modeled name (`BatchRequestTooLong`, `QueueDoesNotExist`), whichever
    spelling the server used; "" when the response carries no code."""
    return modeled_name(str(exc.response.get("Error", {}).get("Code", "")))


def query_error_code(name: str) -> str:
    """How real SQS spells the modeled error `name` on the wire: what a fake must answer to be believed."""
    return QUERY_ERROR_CODES.get(name, name)

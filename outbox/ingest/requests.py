"""From an HTTP request to a checked `MessageRequest`: content type, encoding, strict JSON, body shape.

Everything a client can get wrong is refused here or in `outbox.core.validation` with an `InvalidRequest`
naming the problem, before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from typing import Final, NoReturn

from outbox.core import exact_json
from outbox.core.domain import ANONYMOUS
from outbox.core.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from outbox.core.schema import QUEUE_MAX_MESSAGE_BYTES
from outbox.core.validation import MessageRequest, check_idempotency_key, validate_message

MAX_BODY_BYTES: Final = 2 * QUEUE_MAX_MESSAGE_BYTES
"""A body above this cannot hold an acceptable message, whatever its whitespace: refused unparsed. With a
`MAX_PAYLOAD_BYTES` above the queue's maximum (payloads through S3, ADR 0023) the bound is twice that
instead (`max_body_bytes`)."""
BODY_FIELDS: Final = frozenset({"payload", "attributes", "group_id"})
_IAM_UNIQUE_ID: Final = re.compile(r"A[A-Z]{3}[A-Z0-9]{12,124}")
"""An IAM unique id: a four-letter kind (`AIDA` user, `AROA` role) and upper-case letters and digits."""


def parse_message_request(
    body: str | None,
    *,
    is_base64_encoded: bool,
    content_type: str | None,
    idempotency_key: str | None,
    fifo: bool,
    max_payload_bytes: int,
    claim_check: bool = False,
) -> MessageRequest:
    """The request's message, checked (`validate_message`, with `claim_check` as there)."""
    _check_content_type(content_type)
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    limit = max_body_bytes(max_payload_bytes)
    document = _strict_json(_body_text(body, is_base64_encoded=is_base64_encoded, limit=limit))
    if not isinstance(document, dict):
        raise InvalidRequest("invalid_body", "the body must be a JSON object with a 'payload' member")
    unknown = sorted(set(document) - BODY_FIELDS)
    if unknown:
        raise InvalidRequest(
            "unknown_field",
            f"unknown member {unknown[0]!r}; allowed: attributes, group_id, payload",
            unknown[0],
        )
    if "payload" not in document:
        raise InvalidRequest("missing_payload", "the body has no 'payload' member", "payload")
    return validate_message(
        document["payload"],
        attributes=document.get("attributes"),
        group_id=document.get("group_id"),
        idempotency_key=idempotency_key,
        fifo=fifo,
        max_payload_bytes=max_payload_bytes,
        claim_check=claim_check,
    )


def max_body_bytes(max_payload_bytes: int) -> int:
    """The largest body read at all: twice the largest payload or the queue's maximum, whichever is more."""
    return 2 * max(QUEUE_MAX_MESSAGE_BYTES, max_payload_bytes)


def principal_from_iam(
    user_arn: str | None, account_id: str | None = None, user_id: str | None = None
) -> str:
    """The caller's identity, which scopes idempotency keys and who may read a message (ADR 0014).

    Account, then user or role name, then the IAM unique id when the IAM authorizer gives one (`userId`:
    `AIDA...` for a user, `AROA...:<session>` for an assumed role): a user or role deleted and re-created
    under the same name gets a new unique id, so it neither replays nor reads its predecessor's messages.
    An assumed role's session name is dropped: the caller chooses it, so it is no identity, and one role's
    keys stay valid across its sessions (and are shared by everyone who assumes it, SSO users of one
    permission set included). Without a well-formed unique id (the local emulator), the name alone; without
    an IAM identity, `anonymous`.
    """
    if not user_arn:
        return ANONYMOUS
    parts = user_arn.split(":", 5)
    if len(parts) != 6:
        return f"{account_id}:{user_arn}" if account_id else user_arn
    account, resource = parts[4] or (account_id or ""), parts[5]
    if resource.startswith("assumed-role/"):
        name, kind = f"role/{resource.split('/')[1]}", "AROA"
    else:
        name, kind = resource, "AIDA" if resource.startswith("user/") else ""
    unique_id = (user_id or "").split(":", 1)[0]  # an assumed role's is "AROA...:<session name>"
    if kind and unique_id.startswith(kind) and _IAM_UNIQUE_ID.fullmatch(unique_id):
        return f"{account}:{name}#{unique_id}"
    return f"{account}:{name}"


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return  # taken as JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            "unsupported_media_type",
            f"Content-Type must be application/json, not {media_type!r}",
            "Content-Type",
        )


def _body_text(body: str | None, *, is_base64_encoded: bool, limit: int) -> str:
    if not body:
        raise InvalidRequest("missing_body", "the request has no body; send a JSON object")
    if len(body) > (limit * 4 // 3 + 4 if is_base64_encoded else limit):
        raise PayloadTooLarge("body_too_large", f"the body is over {limit} bytes")
    if not is_base64_encoded:
        return body
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid_base64", "the body is marked base64 but does not decode") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("invalid_encoding", f"the body is not valid UTF-8 (byte {exc.start})") from None


def _strict_json(text: str) -> object:
    """The body as Python values, every number exact: a fraction or exponent as a `Decimal`, so that
    `0.1000000000000000055511151231257827` and `1e-400` reach the queue as written, not as floats."""
    try:
        return exact_json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise InvalidRequest("too_deep", "the body nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            "invalid_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError:
        # The one other ValueError json.loads raises: an integer past Python's int digit limit. Refused
        # rather than carried, because a consumer reading the message with Python's json.loads would fail
        # on it the same way. (A number with a fraction or an exponent has no such limit.)
        raise InvalidRequest(
            "invalid_json",
            f"the body has an integer of more than {sys.get_int_max_str_digits()} digits; "
            "send a number that long as a string",
        ) from None


def _reject_constant(name: str) -> NoReturn:
    raise InvalidRequest("invalid_number", f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise InvalidRequest("duplicate_key", f"the body repeats the object key {key[:64]!r}")
        document[key] = value
    return document

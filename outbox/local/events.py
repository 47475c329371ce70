"""API Gateway HTTP API (payload 2.0) events, as the deployed API would send them to the ingest handler.

Used by the local demo and stack, and by the tests, so they all drive the real handler the same way.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from outbox.ops.invoke import LocalContext, local_context


def http_api_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    user_arn: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An HTTP API 2.0 event. `user_arn` fills the IAM authorizer context, as IAM authorization does."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    if isinstance(body, bytes) or base64_body:
        raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        body_text: str | None = base64.b64encode(raw).decode("ascii")
        is_base64 = True
    else:
        body_text, is_base64 = body, False
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": lowered.get("user-agent", "outbox-local"),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": "25/Nov/2026:00:00:00 +0000",
        "timeEpoch": 0,
    }
    if user_arn:
        account = user_arn.split(":")[4]
        request_context["authorizer"] = {
            "iam": {"accountId": account, "userArn": user_arn, "callerId": "LOCAL", "userId": "LOCAL"}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": lowered,
        "requestContext": request_context,
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if body_text is not None:
        event["body"] = body_text
    return event


__all__ = ["LocalContext", "http_api_event", "local_context"]

"""Ingest Lambda (`outbox.ingest.handler.handler`): HTTP API payload 2.0 in, JSON out.

Routes and error mapping only; the work is `requests` (parse and check) and `service` (write and read).
Payloads never reach the logs. Each invocation publishes `MessagesAccepted` and what its DynamoDB calls
consumed (`DynamoDBWriteUnits`, `DynamoDBReadUnits`, as DynamoDB reported them: issue #17), namespace
`Outbox`, `service=outbox-ingest`; the dashboard prices ingest + relay per million messages.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from outbox.core import exact_json
from outbox.core.clients import dynamodb_client, s3_client
from outbox.core.emf import flush
from outbox.core.errors import InvalidRequest, MessageNotFound, MethodNotAllowed, StoreUnavailable
from outbox.core.settings import Settings
from outbox.core.tracing import request_trace
from outbox.core.usage import UsageMeter
from outbox.data.store import MessageStore
from outbox.ingest.requests import parse_message_request, principal_from_iam
from outbox.ingest.service import accept, message_status

SERVICE = "outbox-ingest"
METRICS_NAMESPACE = "Outbox"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
"""X-Ray (ADR 0021): off outside Lambda; the request's segment holds the DynamoDB (and S3) calls."""
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
app = APIGatewayHttpResolver()
_usage = UsageMeter()
"""The capacity units of the function's DynamoDB calls, taken once per invocation (issue #17)."""


@functools.cache
def _settings() -> Settings:
    return Settings.from_env()


def _store() -> MessageStore:
    """The store for one request. Its S3 client is made (once per container, `s3_client`) only when a
    payload is in S3."""
    settings = _settings()
    return MessageStore(
        dynamodb_client(),
        settings.messages_table,
        payloads_table=settings.payloads_table,
        s3=_usage.metered(s3_client),
    )


def _principal() -> str:
    iam = app.current_event.request_context.authorizer.iam
    return principal_from_iam(iam.user_arn, iam.account_id, iam.user_id) if iam else principal_from_iam(None)


@app.post("/messages")
def post_message() -> Response[dict[str, str]]:
    event = app.current_event
    settings = _settings()
    request = parse_message_request(
        event.body,
        is_base64_encoded=bool(event.is_base64_encoded),
        content_type=event.headers.get("content-type"),
        idempotency_key=event.headers.get("idempotency-key"),
        fifo=settings.fifo,
        max_payload_bytes=settings.max_payload_bytes,
        claim_check=settings.claim_check,
    )
    accepted = accept(
        request,
        store=_store(),
        settings=settings,
        principal=_principal(),
        trace_header=request_trace(event.headers),
    )
    logger.info("message accepted", message_id=accepted.message_id, replayed=accepted.replayed)
    status = HTTPStatus.OK if accepted.replayed else HTTPStatus.ACCEPTED
    body = {"message_id": accepted.message_id, "status": accepted.status.value}
    return Response(status, content_types.APPLICATION_JSON, body)


@app.get("/messages/<message_id>")
def get_message(message_id: str) -> Response[str]:
    include = app.current_event.query_string_parameters.get("include", "")
    record = message_status(
        message_id, store=_store(), principal=_principal(), include_payload=include == "payload"
    )
    # Written by `exact_json`: the payload's numbers exactly as accepted (`json.dumps` would write a
    # `Decimal` it cannot hold, such as 1e400, as `Infinity`, which is not JSON).
    return Response(HTTPStatus.OK, content_types.APPLICATION_JSON, exact_json.dumps(record))


def _error(status: int, code: str, message: str, field: str | None = None) -> Response[dict[str, Any]]:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return Response(status, content_types.APPLICATION_JSON, {"error": error})


@app.exception_handler(InvalidRequest)
def _invalid_request(exc: InvalidRequest) -> Response[dict[str, Any]]:
    logger.info("request refused", code=exc.code, field=exc.field, status=exc.http_status)
    return _error(exc.http_status, exc.code, exc.message, exc.field)


@app.exception_handler(MessageNotFound)
def _message_not_found(exc: MessageNotFound) -> Response[dict[str, Any]]:
    return _error(HTTPStatus.NOT_FOUND, "not_found", "no such message")


@app.exception_handler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable) -> Response[dict[str, Any]]:
    logger.warning("store unavailable", reason=str(exc), retryable=exc.retryable)
    status = HTTPStatus.SERVICE_UNAVAILABLE if exc.retryable else HTTPStatus.INTERNAL_SERVER_ERROR
    return _error(status, "store_unavailable", "the message store could not take the request; retry later")


@app.not_found
def _route_not_found(exc: NotFoundError) -> Response[dict[str, Any]]:
    path = app.current_event.path
    if path == "/messages" or (path.startswith("/messages/") and path.count("/") == 2):
        allowed = "POST" if path == "/messages" else "GET"
        error = MethodNotAllowed("method_not_allowed", f"{path} accepts {allowed} only")
        response = _error(error.http_status, error.code, error.message)
        response.headers["Allow"] = allowed
        return response
    return _error(HTTPStatus.NOT_FOUND, "no_route", f"no route for {path}")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("unexpected error")
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the request failed unexpectedly")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # a response may hold a payload: never traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _usage.attach(dynamodb_client())  # once per client: the warm container's
    _usage.take()  # what the client did before this invocation is not its own
    try:
        response = app.resolve(event, context)
        publish_metrics(metrics, accepted=response.get("statusCode") == HTTPStatus.ACCEPTED)
    finally:
        flush(metrics)
    return response


def publish_metrics(sink: Metrics, *, accepted: bool) -> None:
    """One invocation's metrics: whether it accepted a new message (a replay is not one) and what its
    DynamoDB calls consumed."""
    usage = _usage.take()
    sink.add_metric(name="MessagesAccepted", unit=MetricUnit.Count, value=int(accepted))
    sink.add_metric(name="DynamoDBWriteUnits", unit=MetricUnit.Count, value=usage.write_units)
    sink.add_metric(name="DynamoDBReadUnits", unit=MetricUnit.Count, value=usage.read_units)
    sink.add_metric(name="S3WriteRequests", unit=MetricUnit.Count, value=usage.s3_write_requests)
    sink.add_metric(name="S3ReadRequests", unit=MetricUnit.Count, value=usage.s3_read_requests)

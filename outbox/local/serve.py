"""`outbox serve`: a local stack to curl and to point the AWS CLI at.

An embedded moto server (the tables and queue), a local HTTP endpoint that turns each request into the
HTTP API 2.0 event the deployed API would send `outbox.ingest.handler`, and the relay on a timer (the
local stand-in for the EventBridge schedule). Ctrl-C (or SIGTERM) stops all three and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from rich.console import Console
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from outbox.clients import dynamodb_client, reset_clients, sqs_client
from outbox.local.emulator import DUMMY_CREDENTIALS, EmbeddedAws
from outbox.local.events import http_api_event, local_context
from outbox.provisioning import provision
from outbox.settings import Settings
from relay.core import Relay

ANONYMOUS_NOTE = "requests are anonymous here (no IAM signature); the deployed API requires SigV4"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class IngestGateway:
    """A WSGI app standing in for API Gateway in front of the ingest handler."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        self._handler = handler

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        raw = request.get_data()
        try:
            body: str | bytes | None = raw.decode("utf-8") if raw else None
        except UnicodeDecodeError:
            body = raw  # API Gateway passes bodies it cannot treat as text base64-encoded
        event = http_api_event(
            request.method,
            request.path,
            body=body,
            headers=dict(request.headers.items()),
            query=dict(request.args.items()) or None,
        )
        result = self._handler(event, local_context(29))
        response = Response(
            result.get("body", ""), status=result["statusCode"], headers=result.get("headers", {})
        )
        return response(environ, start_response)


@dataclass
class LocalStack:
    aws: EmbeddedAws
    api: BaseWSGIServer
    relay_thread: threading.Thread
    stop: threading.Event

    @property
    def api_url(self) -> str:
        return f"http://localhost:{self.api.server_address[1]}"


def serve(console: Console, *, port: int, aws_port: int, relay_every: float, fifo: bool) -> int:
    os.environ.update(
        {**DUMMY_CREDENTIALS, "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING")}
    )
    aws = EmbeddedAws(aws_port).start()
    os.environ["AWS_ENDPOINT_URL"] = aws.endpoint_url
    reset_clients()
    resources = provision(dynamodb_client(), sqs_client(), prefix="local", fifo=fifo)
    os.environ.update(resources.environment())
    settings = Settings.from_env()

    from outbox import ingest  # noqa: PLC0415 - the handler reads the environment set above

    ingest._settings.cache_clear()
    stop = threading.Event()
    api = make_server("127.0.0.1", port, IngestGateway(ingest.handler), threaded=True, request_handler=_Quiet)
    relay_thread = threading.Thread(
        target=_relay_loop, args=(settings, relay_every, stop, console), name="relay-timer", daemon=True
    )
    stack = LocalStack(aws, api, relay_thread, stop)
    api_thread = threading.Thread(target=api.serve_forever, name="local-api", daemon=True)
    api_thread.start()
    relay_thread.start()
    _announce(console, stack, resources.environment(), relay_every)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stop.wait(0.5):
        pass
    console.print("stopping: API, relay, emulator")
    api.shutdown()
    api_thread.join(timeout=10)
    relay_thread.join(timeout=60)
    aws.stop()
    console.print("stopped")
    return 0


def _relay_loop(settings: Settings, every: float, stop: threading.Event, console: Console) -> None:
    relay = Relay(dynamodb=dynamodb_client(), sqs=sqs_client(), settings=settings)
    while not stop.wait(every):
        summary = relay.run(time.monotonic() + max(every, 5.0))
        if summary.sent or summary.rolled_back or summary.poisoned or summary.errors:
            console.print(
                f"relay: {json.dumps(summary.as_dict(), sort_keys=True)}", markup=False, highlight=False
            )


def _announce(console: Console, stack: LocalStack, environment: dict[str, str], relay_every: float) -> None:
    console.print(f"API          {stack.api_url}   ({ANONYMOUS_NOTE})", soft_wrap=True)
    console.print(f"AWS endpoint {stack.aws.endpoint_url}   (moto; dummy credentials)")
    console.print(f"relay        every {relay_every:g} s")
    console.print("For the AWS CLI and `outbox` commands in another shell:", markup=False)
    for name, value in {
        **environment,
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": stack.aws.endpoint_url,
    }.items():
        console.print(f"export {name}={value}", markup=False, highlight=False, soft_wrap=True)
    body = '{"payload": {"hello": "world"}}'
    console.print(
        f"Try: curl -X POST {stack.api_url}/messages -H 'Content-Type: application/json' -d '{body}'",
        markup=False,
        soft_wrap=True,
    )
    console.print("ready (Ctrl-C to stop)", markup=False)

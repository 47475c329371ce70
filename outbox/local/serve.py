"""`outbox serve`: a local stack to curl and to point the AWS CLI at.

An embedded moto server (the tables and queue), a local HTTP endpoint that turns each request into the
HTTP API 2.0 event the deployed API would send `outbox.ingest.handler.handler`, and the relay invoked the two
ways the stack invokes it: woken by the Outbox table's stream (the doorbell; outbox/local/stream.py reads the
emulator's stream four times a second, as Lambda's poller does) and swept on a timer (the stand-in for the
EventBridge schedule). One relay invocation runs at a time. Unless turned off, the example consumer
(`outbox.consumer.example`, ADR 0019) reads the queue through a stand-in for its SQS event source mapping
(outbox/local/consumer.py), so a message goes on to PROCESSING and COMPLETED. Ctrl-C (or SIGTERM) stops all
of it and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

import boto3
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from outbox.core.clients import dynamodb_client, reset_clients, sqs_client
from outbox.core.settings import Settings
from outbox.local.consumer import QueuePoller
from outbox.local.emulator import DUMMY_CREDENTIALS, EmbeddedAws, serve_wsgi
from outbox.local.events import http_api_event, local_context
from outbox.local.stream import StreamTail
from outbox.ops.invoke import RelayRun, run_example_consumer, run_relay, use_local_function_environment
from outbox.provisioning import provision

ANONYMOUS_NOTE = "requests are anonymous here (no IAM signature); the deployed API requires SigV4"
STREAM_POLL_SECONDS = 0.25
"""Lambda polls each shard of a DynamoDB stream four times a second (Lambda developer guide, "Using AWS
Lambda with Amazon DynamoDB")."""
QUEUE_POLL_SECONDS = 0.25
"""Between empty receives of the example consumer's poller (Lambda long-polls; a short pause here keeps
the emulator free for the API and the relay)."""


class ServeError(Exception):
    """The local stack could not start (a port taken, say); the message is one line for the user."""


class Lines:
    """Writes whole lines, flushed at once and never wrapped, from any thread: a relay summary stays one
    JSON object on one line whatever the terminal width, and is there to read as soon as it is printed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            if self._closed:
                return
            try:
                stream.write(line + "\n")
                stream.flush()
            except BrokenPipeError:  # `outbox serve | head`: the reader left; the stack keeps serving
                self._closed = True


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
    consumer_thread: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        return f"http://localhost:{self.api.server_address[1]}"


def serve(
    *,
    port: int,
    aws_port: int,
    relay_every: float,
    fifo: bool,
    consumer: bool = True,
    out: TextIO | None = None,
) -> int:
    """Start the stack, print the endpoints and `export` lines, run until SIGINT/SIGTERM; 0 when stopped.

    Raises `ServeError` when a port cannot be listened on (nothing is left running then)."""
    say = Lines(out)
    os.environ.update(
        {**DUMMY_CREDENTIALS, "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING")}
    )
    use_local_function_environment()  # the ingest handler's metrics off too, from the first request on
    from outbox.ingest import handler as ingest  # noqa: PLC0415 - the handler's logger reads the environment set above

    api = _listen("the local API (--port)", port, IngestGateway(ingest.handler))
    try:
        aws = _start_emulator(aws_port)
    except BaseException:
        api.server_close()
        raise
    try:
        os.environ["AWS_ENDPOINT_URL"] = aws.endpoint_url
        reset_clients()
        resources = provision(dynamodb_client(), sqs_client(), prefix="local", fifo=fifo)
        os.environ.update(resources.environment())
        Settings.from_env()  # a bad setting stops here, before anything listens
        ingest._settings.cache_clear()
    except BaseException:
        api.server_close()
        aws.stop()
        raise
    stop = threading.Event()
    try:
        doorbell = _doorbell(resources.outbox_table)
        consumer_thread = _consumer_thread(resources.queue_url, stop, say) if consumer else None
    except BaseException:
        api.server_close()
        aws.stop()
        raise
    relay_thread = threading.Thread(
        target=_relay_loop, args=(relay_every, doorbell, stop, say), name="relay", daemon=True
    )
    stack = LocalStack(aws, api, relay_thread, stop, consumer_thread)
    api_thread = threading.Thread(target=api.serve_forever, name="local-api", daemon=True)
    api_thread.start()
    relay_thread.start()
    if consumer_thread is not None:
        consumer_thread.start()
    _announce(say, stack, resources.environment(), relay_every)
    _run_until_stopped(stack, api_thread, say)
    return 0


def _run_until_stopped(stack: LocalStack, api_thread: threading.Thread, say: Lines) -> None:
    """Serve until SIGINT or SIGTERM, then stop the API, the relay and the consumer, then the emulator."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stack.stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stack.stop.wait(0.5):
        pass
    say("stopping: API, relay, consumer, emulator")
    stack.api.shutdown()
    stack.api.server_close()
    api_thread.join(timeout=10)
    stack.relay_thread.join(timeout=60)
    if stack.consumer_thread is not None:
        stack.consumer_thread.join(timeout=60)
    stack.aws.stop()
    say("stopped")


def _listen(what: str, port: int, app: IngestGateway) -> BaseWSGIServer:
    try:
        return serve_wsgi(port, app, _Quiet)
    except OSError as exc:
        raise ServeError(f"{what} cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def _start_emulator(port: int) -> EmbeddedAws:
    try:
        return EmbeddedAws(port).start()
    except OSError as exc:
        raise ServeError(
            f"the AWS emulator (--aws-port) cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
        ) from None


def _doorbell(outbox_table: str) -> StreamTail:
    """The Outbox table's stream, followed from now on (the mapping starts at LATEST)."""
    stream_arn = dynamodb_client().describe_table(TableName=outbox_table)["Table"]["LatestStreamArn"]
    return StreamTail(boto3.client("dynamodbstreams"), stream_arn).start()


def _relay_loop(every: float, doorbell: StreamTail, stop: threading.Event, say: Lines) -> None:
    """The stack's two triggers, one invocation at a time: each stream batch wakes the relay for the
    shards it names, and every `every` seconds a sweep of all shards runs, as the deployed rule's does."""
    budget = max(every, 5.0)
    next_sweep = time.monotonic() + every
    while not stop.wait(STREAM_POLL_SECONDS):
        for event in doorbell.poll():
            _report(say, "doorbell", run_relay(budget, event))
        if time.monotonic() >= next_sweep:
            _report(say, "sweep", run_relay(budget))
            next_sweep = time.monotonic() + every


def _consumer_thread(queue_url: str, stop: threading.Event, say: Lines) -> threading.Thread:
    poller = QueuePoller(sqs_client(), queue_url, run_example_consumer)
    return threading.Thread(target=_consumer_loop, args=(poller, stop, say), name="consumer", daemon=True)


def _consumer_loop(poller: QueuePoller, stop: threading.Event, say: Lines) -> None:
    """The example consumer's event source mapping: a batch whenever the queue has messages."""
    while not stop.is_set():
        delivery = poller.poll()
        if delivery.received:
            say(f"consumer: {json.dumps({'received': delivery.received, 'failed': delivery.failed})}")
        else:
            stop.wait(QUEUE_POLL_SECONDS)


def _report(say: Lines, trigger: str, run: RelayRun) -> None:
    if run.sent or run.rolled_back or run.poisoned or run.errors:
        say(f"relay: {json.dumps({'trigger': trigger, **run.reported}, sort_keys=True)}")


def _announce(say: Lines, stack: LocalStack, environment: dict[str, str], relay_every: float) -> None:
    say(f"API          {stack.api_url}   ({ANONYMOUS_NOTE})")
    say(f"AWS endpoint {stack.aws.endpoint_url}   (moto; dummy credentials)")
    say(
        f"relay        woken by the Outbox table's stream (polled every {STREAM_POLL_SECONDS:g} s), "
        f"swept every {relay_every:g} s"
    )
    if stack.consumer_thread is not None:
        say("consumer     the example consumer reads the queue: PROCESSING, then COMPLETED")
    else:
        say("consumer     off (--no-consumer): the queue is yours to read")
    say("For the AWS CLI and `outbox` commands in another shell:")
    for name, value in {
        **environment,
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": stack.aws.endpoint_url,
    }.items():
        say(f"export {name}={value}")
    body = '{"payload": {"hello": "world"}}'
    say(f"Try: curl -X POST {stack.api_url}/messages -H 'Content-Type: application/json' -d '{body}'")
    say("ready (Ctrl-C to stop)")

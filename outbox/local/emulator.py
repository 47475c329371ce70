"""An embedded moto server on a free loopback port, with every request serialized.

moto's own threaded server handles requests on threads with no lock, and a cancelled transaction restores
whole tables from a snapshot: concurrent callers lose acknowledged writes and see torn transactions
(docs/design.md §8). One lock held for the whole request, response body included, makes it behave like one
consistent store. See ADR 0004.
"""

from __future__ import annotations

import socket
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from outbox.local.fast_moto import MotoInternalsChanged, install_fast_transactions
from outbox.local.fast_sqs import install_fast_sqs
from outbox.local.moto_gaps import install_moto_gaps
from outbox.provisioning import EMULATOR_ENVIRONMENT

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
DUMMY_CREDENTIALS: Final = EMULATOR_ENVIRONMENT
"""Credentials and region for the emulator (an emulator accepts any); `outbox init` uses the same."""


def serve_wsgi(
    port: int, app: Any, request_handler: type[WSGIRequestHandler], *, threaded: bool = True
) -> BaseWSGIServer:
    """A werkzeug server on 127.0.0.1:`port` (0: any free port). The socket is bound here, so that a port
    in use raises `OSError` (werkzeug's own bind prints to stderr and exits the process instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        # werkzeug takes a duplicate of the descriptor; this one closes on leaving the block.
        return make_server(
            "127.0.0.1", port, app, threaded=threaded, request_handler=request_handler, fd=listener.fileno()
        )


class SerializedApp:
    """Wraps a WSGI app so that one request at a time runs in it, response consumed inside the lock."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.requests += 1
            result = self._app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log line per AWS call: the demo's output is the summary, not moto's traffic."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmbeddedAws:
    """A moto server in a background thread. `endpoint_url` uses `localhost`, which moto needs for
    path-style S3 (CDK asset uploads)."""

    def __init__(self, port: int = 0, *, fast_transactions: bool = True) -> None:
        if fast_transactions:
            try:
                install_fast_transactions()  # ADR 0011: same semantics, without copying whole tables
            except MotoInternalsChanged as exc:
                warnings.warn(f"moto's own (slower) transactions are used: {exc}", stacklevel=2)
            try:
                install_fast_sqs()  # ADR 0011: moto's answers, without needless datetimes and counts
            except MotoInternalsChanged as exc:
                warnings.warn(f"moto's SQS counts every queue on each send: {exc}", stacklevel=2)
        install_moto_gaps()  # what moto answers differently from AWS and the outbox relies on
        self.app = SerializedApp(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = serve_wsgi(port, self.app, _QuietRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> EmbeddedAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def embedded_aws(port: int = 0) -> Iterator[EmbeddedAws]:
    server = EmbeddedAws(port).start()
    try:
        yield server
    finally:
        server.stop()

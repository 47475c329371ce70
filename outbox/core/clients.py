"""AWS clients, created on first use and cached for warm invocations.

Nothing here talks to AWS at import time. Each client honours `AWS_ENDPOINT_URL` (moto, any emulator) as
it is when the client is first built; `reset_clients()` forgets them, for tests and local stacks that move
the endpoint.

Clients come from a botocore session, not boto3: boto3 adds resources and s3transfer, which we never use,
to every cold start (about 50 ms of import here; bench/startup.py measures it).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Final, cast

import botocore.session
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

CONNECT_TIMEOUT_SECONDS: Final = 2
READ_TIMEOUT_SECONDS: Final = 5
CLIENT_CONFIG = Config(
    # Transport retries (throttling, 5xx, connection errors) belong to botocore's standard mode; domain
    # retries (TransactionConflict, a lease that still has time) are tenacity's, in the code that knows them.
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    tcp_keepalive=True,
)


def _endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or None


@functools.cache
def dynamodb_client() -> DynamoDBClient:
    return cast(
        "DynamoDBClient",
        _session().create_client("dynamodb", endpoint_url=_endpoint_url(), config=CLIENT_CONFIG),
    )


@functools.cache
def sqs_client() -> SQSClient:
    return cast(
        "SQSClient", _session().create_client("sqs", endpoint_url=_endpoint_url(), config=CLIENT_CONFIG)
    )


@functools.cache
def s3_client() -> S3Client:
    """The claim check's client (ADR 0023). Built only when a payload is in S3: S3's service model is the
    largest botocore loads, and an outbox without the claim check should not pay for it at a cold start.
    Against an emulator endpoint, path-style addressing (`http://localhost:5000/bucket/key`): a
    virtual-hosted name (`bucket.localhost`) resolves only where the system maps `*.localhost`."""
    endpoint = _endpoint_url()
    config = CLIENT_CONFIG.merge(Config(s3={"addressing_style": "path"})) if endpoint else CLIENT_CONFIG
    return cast("S3Client", _session().create_client("s3", endpoint_url=endpoint, config=config))


def _session() -> botocore.session.Session:
    """A new session per client: botocore sessions are not thread-safe, and these are built once each."""
    return botocore.session.get_session()


def reset_clients() -> None:
    """Forget cached clients so the next call builds them from the current environment."""
    dynamodb_client.cache_clear()
    sqs_client.cache_clear()
    s3_client.cache_clear()

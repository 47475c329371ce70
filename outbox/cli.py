"""The `outbox` command: provisioning and local runs. Needs the `local` extra (typer, rich, moto)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from outbox.clients import dynamodb_client, reset_clients, sqs_client
from outbox.provisioning import DEFAULT_PREFIX, provision
from outbox.settings import SettingsError

app = typer.Typer(
    help="Transactional outbox for DynamoDB + SQS: provision, run locally, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


@app.command()
def init(
    endpoint_url: Annotated[
        str | None, typer.Option(help="AWS endpoint (moto, an emulator); default: AWS_ENDPOINT_URL or AWS.")
    ] = None,
    fifo: Annotated[
        bool, typer.Option("--fifo", help="Create a FIFO queue (messages then need group_id).")
    ] = False,
    prefix: Annotated[str, typer.Option(help="Name prefix for the tables and queues.")] = DEFAULT_PREFIX,
) -> None:
    """Create both tables and the queue (+DLQ) idempotently; print the `export` lines to use them.

    Example: eval "$(outbox init --endpoint-url http://localhost:5000)"
    """
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        reset_clients()
    resources = provision(dynamodb_client(), sqs_client(), prefix=prefix, fifo=fifo)
    for name, value in resources.environment().items():
        print(f"export {name}={value}")
    if endpoint_url:
        print(f"export AWS_ENDPOINT_URL={endpoint_url}")


@app.command()
def demo(
    messages: Annotated[int, typer.Option(min=1, max=10_000, help="How many messages to ingest.")] = 5,
    fifo: Annotated[bool, typer.Option("--fifo", help="Use a FIFO queue.")] = False,
) -> None:
    """Ingest a few messages through the real ingest handler on an embedded AWS emulator, and show what
    was stored. No AWS account needed.

    Example: outbox demo --messages 10
    """
    from outbox.local.demo import run_demo  # noqa: PLC0415 - moto loads only when a local run needs it

    raise typer.Exit(run_demo(console, messages=messages, fifo=fifo))


def main() -> None:
    """Console script: user errors end as one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except SettingsError as exc:
        errors.print(f"configuration error: {exc}", markup=False, highlight=False)
        raise SystemExit(2) from None
    except (BotoCoreError, ClientError) as exc:
        errors.print(f"AWS error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

"""The `outbox` command: provisioning and local runs. Needs the `local` extra (typer, rich, moto)."""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from outbox.clients import dynamodb_client, reset_clients, sqs_client
from outbox.errors import InvalidRequest, MessageNotFound
from outbox.provisioning import DEFAULT_PREFIX, provision
from outbox.settings import Settings, SettingsError

app = typer.Typer(
    help="Transactional outbox for DynamoDB + SQS: provision, run locally, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
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
    messages: Annotated[int, typer.Option(min=1, max=5_000, help="How many messages to accept.")] = 1000,
    fifo: Annotated[bool, typer.Option("--fifo", help="Use a FIFO queue (10 groups).")] = False,
    fail_rate: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of SQS sends that fail (retries, rollbacks).")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule.")] = 7,
) -> None:
    """The whole promise on an embedded AWS emulator (moto), no account needed: accept messages through
    the real ingest handler, relay them to SQS through injected faults, read the queue, and check that
    every accepted message is QUEUED and was received. Exits 0 only then.

    Examples: outbox demo  |  outbox demo --messages 200 --fifo --fail-rate 0.3
    """
    from outbox.local.demo import run_demo  # noqa: PLC0415 - moto loads only when a local run needs it

    raise typer.Exit(run_demo(console, messages=messages, fifo=fifo, fail_rate=fail_rate, seed=seed))


@app.command()
def relay(
    once: Annotated[
        bool, typer.Option("--once", help="Run one relay invocation and exit (required).")
    ] = False,
    max_seconds: Annotated[
        float, typer.Option(min=1, help="Time budget of the run, like a Lambda timeout.")
    ] = 60,
) -> None:
    """Run the relay once with the current environment; print its summary as one JSON line.

    Exits 0 when the run ended normally, also when work remains for the next run; 2 on a configuration
    error. Example: outbox relay --once --max-seconds 30
    """
    if not once:
        raise typer.BadParameter("only --once is supported here; `outbox serve` runs a relay on a timer")
    from relay.clock import SystemClock  # noqa: PLC0415 - the relay loads only when asked for
    from relay.core import Relay  # noqa: PLC0415

    clock = SystemClock()
    runner = Relay(dynamodb=dynamodb_client(), sqs=sqs_client(), settings=Settings.from_env(), clock=clock)
    summary = runner.run(clock.monotonic() + max_seconds)
    print(json.dumps(summary.as_dict(), sort_keys=True))


@app.command()
def requeue(
    message_id: Annotated[str | None, typer.Argument(help="The FAILED message to send again.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Requeue every FAILED message.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Put a FAILED message back to PENDING, in its place in the outbox (its FIFO group stays in order).

    Example: outbox requeue 0190c6d2-...   or   outbox requeue --all-failed
    """
    from relay import admin  # noqa: PLC0415

    settings = Settings.from_env()
    if all_failed == (message_id is not None):
        raise typer.BadParameter("give a MESSAGE_ID or --all-failed, not both or neither")
    if all_failed:
        outcome = admin.requeue_all_failed(
            dynamodb=dynamodb_client(),
            settings=settings,
            actor=_actor(),
            progress=lambda done, total: _progress(f"requeue {done:,}/{total:,}"),
        )
        requeued, skipped = outcome.requeued, outcome.skipped
    else:
        requeued = [
            admin.requeue(message_id or "", dynamodb=dynamodb_client(), settings=settings, actor=_actor())
        ]
        skipped = {}
    results = [
        {"message_id": result.message_id, "status": "PENDING", "reused_entry": result.reused_entry}
        for result in requeued
    ]
    if json_output:
        print(
            json.dumps([*results, *({"message_id": one, "left_alone": why} for one, why in skipped.items())])
        )
        return
    console.print(f"requeued {len(results)} message(s)")
    for one, why in skipped.items():
        console.print(f"left alone {one}: {why}")


@app.command()
def skip(
    message_id: Annotated[str, typer.Argument(help="The FAILED message whose parked entry to drop.")],
) -> None:
    """Drop a FAILED message's parked entry so its FIFO group moves on; the message stays FAILED."""
    from relay import admin  # noqa: PLC0415

    result = admin.skip(message_id, dynamodb=dynamodb_client(), settings=Settings.from_env(), actor=_actor())
    if result.orphaned:
        console.print(f"dropped the parked entry of {message_id}, whose message was gone")
    else:
        console.print(f"skipped {message_id}; it stays FAILED")


@app.command("clear-owed-ttl")
def clear_owed_ttl(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """One-off for tables written before 0.2: remove the TTL from every message still owed to the queue
    (PENDING, or FAILED and not skipped), so DynamoDB cannot delete it unsent. Safe while relays run.

    Example: outbox clear-owed-ttl --dry-run
    """
    from relay import admin  # noqa: PLC0415

    result = admin.clear_owed_ttl(
        dynamodb_client(),
        Settings.from_env(),
        dry_run=dry_run,
        progress=lambda r: _progress(f"checked {r.checked:,}, cleared {r.cleared:,}"),
    )
    counts = {
        "owed_with_ttl": result.checked,
        "cleared": result.cleared,
        "changed_meanwhile": result.changed_meanwhile,
    }
    if json_output:
        print(json.dumps(counts, sort_keys=True))
    else:
        done = f"would clear {result.checked:,}" if dry_run else f"cleared {result.cleared:,}"
        moved = f"; {result.changed_meanwhile:,} moved on meanwhile" if result.changed_meanwhile else ""
        console.print(f"{result.checked:,} owed message(s) carried a TTL; {done}{moved}")


@app.command()
def status(
    message_id: Annotated[str, typer.Argument(help="The message to show.")],
    payload: Annotated[bool, typer.Option("--payload", help="Include the payload and attributes.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show one message's status record, read consistently from the Messages table.

    Example: outbox status 0190c6d2-... --payload
    """
    from outbox import exact_json  # noqa: PLC0415
    from outbox.domain import is_issued_message_id  # noqa: PLC0415
    from outbox.service import status_record  # noqa: PLC0415
    from outbox.store import MessageStore  # noqa: PLC0415

    if not is_issued_message_id(message_id):  # DynamoDB refuses an over-long key instead of missing it
        raise MessageNotFound(message_id)
    settings = Settings.from_env()
    item = MessageStore(dynamodb_client(), settings.messages_table).get_message(message_id)
    if item is None:
        raise MessageNotFound(message_id)
    record = status_record(item, include_payload=payload)
    if json_output:
        print(exact_json.dumps(record, sort_keys=True))
        return
    table = Table(show_header=False)
    for name, value in record.items():
        table.add_row(name, value if isinstance(value, str) else exact_json.dumps(value))
    console.print(table)


@app.command()
def stats(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Counts per status, outbox depth per shard, parked entries, and the oldest pending age.

    Example: outbox stats --json
    """
    from relay import admin  # noqa: PLC0415

    result = admin.stats(dynamodb_client(), Settings.from_env()).as_dict()
    if json_output:
        print(json.dumps(result, sort_keys=True))
        return
    table = Table(title="outbox stats", show_header=False)
    for name, count in sorted(result["statuses"].items()):
        table.add_row(f"messages {name}", f"{count:,}")
    table.add_row("outbox entries", f"{result['outbox_depth']:,}")
    table.add_row("  per shard", " ".join(f"{s}:{n}" for s, n in result["outbox_depth_per_shard"].items()))
    table.add_row("parked (FAILED, holding their place)", f"{result['parked']:,}")
    if result["parked_without_message"]:
        table.add_row(
            "  of them, message gone (outbox skip ID)", ", ".join(result["parked_without_message_ids"])
        )
    table.add_row("oldest pending age", f"{result['oldest_pending_age_seconds']:.1f} s")
    console.print(table)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port of the local HTTP API.")] = 8080,
    aws_port: Annotated[int, typer.Option(help="Port of the embedded AWS emulator (0: any free port).")] = 0,
    relay_every: Annotated[float, typer.Option(min=0.2, help="Seconds between relay runs.")] = 5.0,
    fifo: Annotated[bool, typer.Option("--fifo", help="Use a FIFO queue.")] = False,
) -> None:
    """A local stack: embedded AWS emulator, the HTTP API in front of the real ingest handler, and the
    relay on a timer. Prints the endpoints and `export` lines; Ctrl-C stops everything.

    Example: outbox serve --port 8080 --relay-every 2
    """
    from outbox.local.serve import serve as run_serve  # noqa: PLC0415

    raise typer.Exit(run_serve(console, port=port, aws_port=aws_port, relay_every=relay_every, fifo=fifo))


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _progress(line: str) -> None:
    """A progress line on stderr, rewritten in place, for a person watching; nothing when redirected."""
    if err_console.is_terminal:
        err_console.print(line, end="\r")


def _shortened(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def main() -> None:
    """Console script: user errors end as one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except SettingsError as exc:
        errors.print(f"configuration error: {exc}", markup=False, highlight=False)
        raise SystemExit(2) from None
    except (InvalidRequest, MessageNotFound) as exc:
        message = (
            exc.message if isinstance(exc, InvalidRequest) else f"no such message: {_shortened(str(exc))}"
        )
        errors.print(f"error: {message}", markup=False, highlight=False)
        raise SystemExit(1) from None
    except (BotoCoreError, ClientError) as exc:
        errors.print(f"AWS error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

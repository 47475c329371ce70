"""The `outbox` command: provisioning, operations and local runs.

User errors end as one line on stderr and a non-zero exit (EXIT_CODES), never a traceback. The operations
commands (init, relay, status, stats, requeue, skip, clear-owed-ttl) need only the base install and import
nothing of moto or `outbox.local`; `demo` and `serve` need the `local` extra and load it only when they run.
Machine output (`--json`, relay summaries) is printed as plain lines, one JSON object each, never wrapped.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import math
import os
import re
import shlex
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Final, NoReturn
from urllib.parse import urlsplit

import botocore.session
import typer
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigNotFound,
    ConfigParseError,
    CredentialRetrievalError,
    InvalidConfigError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
    UnknownCredentialError,
)
from rich.console import Console
from rich.table import Table

from outbox.core.clients import dynamodb_client, reset_clients, s3_client, sqs_client
from outbox.core.errors import InvalidRequest, MessageNotFound, OutboxError
from outbox.core.functions import WAIT_FOR_BUSY_SHARDS
from outbox.core.settings import Settings, SettingsError
from outbox.provisioning import (
    DEFAULT_PREFIX,
    EMULATOR_CREDENTIALS,
    EMULATOR_REGION,
    BucketTaken,
    is_emulator_endpoint,
    payloads_bucket_name,
    prefix_problem,
    provision,
)

if TYPE_CHECKING:
    from outbox.ops.invoke import RelayRun

EXIT_CODES: Final = {
    0: "done (relay: the run worked, also when work remains for the next run; serve: stopped by Ctrl-C)",
    1: "the operation failed: an AWS error, no such message (or not FAILED), a relay run that sent "
    "nothing and hit failures (see relay --help), a failed demo check, a port serve cannot listen on",
    2: "configuration or usage error, found before anything was changed: a bad option or argument, a "
    "missing or bad setting, no AWS region or credentials, the local tools not installed",
    130: "interrupted (Ctrl-C)",
}
LOCAL_EXTRA_HINT: Final = "pip install 'dynamodb-sqs-outbox[local]'"
_CONFIGURATION_ERRORS: Final = (
    NoRegionError,
    InvalidRegionError,
    NoCredentialsError,
    PartialCredentialsError,
    UnknownCredentialError,
    CredentialRetrievalError,
    ProfileNotFound,
    ConfigNotFound,
    ConfigParseError,
    InvalidConfigError,
    SSOError,
    TokenRetrievalError,
)
"""botocore's errors about the local AWS configuration (region, credentials, profile): exit 2, not 1."""
_NO_REGION: Final = (
    "no AWS region: set AWS_DEFAULT_REGION (export AWS_DEFAULT_REGION=us-east-1, say) "
    "or a region in your AWS profile"
)
_NO_CREDENTIALS: Final = (
    "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(any values do for an emulator on this machine)"
)


def _exception_class(name: str) -> type[Exception]:
    """click's exception classes as this typer raises them (typer 0.29 vendors click, older typers use
    click itself): found through `typer.BadParameter`, which both export."""
    for klass in typer.BadParameter.__mro__:
        if klass.__name__ == name and issubclass(klass, Exception):
            return klass
    raise ImportError(f"typer.BadParameter does not derive from {name}")  # pragma: no cover


_UsageError: Final = _exception_class("UsageError")
_ClickException: Final = _exception_class("ClickException")

app = typer.Typer(
    help="Transactional outbox for DynamoDB + SQS: provision, run locally, inspect.",
    epilog="\b\nExit codes:\n"  # \b: click keeps this paragraph's lines as they are
    + "\n".join(
        textwrap.fill(meaning, 76, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
        for code, meaning in EXIT_CODES.items()
    ),
    rich_markup_mode=None,  # click's plain help: paragraphs rewrapped to the terminal, no boxes
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


class CommandError(Exception):
    """Ends the command with `message` as one line on stderr and `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# -- option checks -----------------------------------------------------------------------------------


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _endpoint_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http(s) URL like http://localhost:5000"
    return None


def _valid_endpoint(value: str | None) -> str | None:
    if value is not None and (problem := _endpoint_problem(value)):
        raise typer.BadParameter(problem)
    return value


def _valid_prefix(value: str) -> str:
    if problem := prefix_problem(value):
        raise typer.BadParameter(f"{value!r}: {problem}")
    return value


# -- AWS configuration -------------------------------------------------------------------------------


def _aws_configuration() -> tuple[str | None, bool]:
    """The region botocore will use and whether it finds credentials, as the clients will see them;
    a malformed AWS_ENDPOINT_URL, an unknown profile or a broken config file is a configuration error."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    if endpoint and (problem := _endpoint_problem(endpoint)):
        raise CommandError(f"configuration error: AWS_ENDPOINT_URL: {problem}", 2)
    session = botocore.session.get_session()
    try:
        region = session.get_config_variable("region")
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise CommandError(f"configuration error: {_one_line(str(exc))}", 2) from None
    return (str(region) if region else None), credentials is not None


def _require_aws() -> str:
    """Check, before any AWS call, that a region and credentials are configured; returns the region."""
    region, has_credentials = _aws_configuration()
    if not region:
        raise CommandError(f"configuration error: {_NO_REGION}", 2)
    if not has_credentials:
        raise CommandError(f"configuration error: {_NO_CREDENTIALS}", 2)
    return region


# -- commands ----------------------------------------------------------------------------------------


@app.command()
def init(
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            help="AWS endpoint (moto, an emulator); default: AWS_ENDPOINT_URL, else AWS itself.",
            callback=_valid_endpoint,
        ),
    ] = None,
    fifo: Annotated[
        bool, typer.Option("--fifo", help="Create a FIFO queue (messages then need group_id).")
    ] = False,
    prefix: Annotated[
        str, typer.Option(help="Name prefix for the tables and queues.", callback=_valid_prefix)
    ] = DEFAULT_PREFIX,
    s3_claim_check: Annotated[
        bool,
        typer.Option(
            "--s3-claim-check",
            help="Also create the S3 bucket for payloads above 350,000 bytes, named <prefix>-payloads "
            "(lower case, '_' as '-'), and export PAYLOADS_BUCKET. S3 bucket names are global: against "
            "AWS, pick a --prefix nobody else uses. Raise MAX_PAYLOAD_BYTES (up to 5,000,000) to accept "
            "such payloads.",
        ),
    ] = False,
) -> None:
    """Create the tables and the queue (+DLQ) idempotently; print the `export` lines to use them.

    The `export` lines are everything a fresh shell needs: the table and queue names, the region, the
    endpoint, and AWS_PROFILE when set. Against an emulator on this machine (localhost), a missing region
    or missing credentials are filled in with dummy ones (as `outbox serve` does) and exported too; against
    any other endpoint they must be configured (exit 2 otherwise), and credentials are never printed. No
    S3 bucket unless --s3-claim-check asks for one (ADR 0023).

    Example: eval "$(outbox init --endpoint-url http://localhost:5000)"
    """
    if s3_claim_check:
        try:
            payloads_bucket_name(prefix)
        except ValueError as exc:
            raise CommandError(f"usage error: --prefix {prefix!r}: {exc}", 2) from None
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "").strip() or None
    assumed: dict[str, str] = {}
    if is_emulator_endpoint(endpoint):
        region, has_credentials = _aws_configuration()
        if not has_credentials:
            assumed.update(EMULATOR_CREDENTIALS)
        if not region:
            assumed.update({"AWS_DEFAULT_REGION": EMULATOR_REGION, "AWS_REGION": EMULATOR_REGION})
        os.environ.update(assumed)
    region = _require_aws()
    reset_clients()
    try:
        resources = provision(
            dynamodb_client(),
            sqs_client(),
            prefix=prefix,
            fifo=fifo,
            payloads_bucket=s3_claim_check,
            s3=s3_client() if s3_claim_check else None,
        )
    except BucketTaken as taken:
        raise CommandError(f"error: {taken}") from None
    exports = {
        **resources.environment(),
        **{name: value for name, value in assumed.items() if name in EMULATOR_CREDENTIALS},
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    if profile := os.environ.get("AWS_PROFILE"):
        exports["AWS_PROFILE"] = profile
    if endpoint:
        exports["AWS_ENDPOINT_URL"] = endpoint
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")


@app.command()
def demo(  # noqa: PLR0917 - typer reads the options from the signature
    messages: Annotated[int, typer.Option(min=1, max=5_000, help="How many messages to accept.")] = 1000,
    fifo: Annotated[bool, typer.Option("--fifo", help="Use a FIFO queue (10 groups).")] = False,
    fail_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.9, help="Share of SQS sends that fail (retries, rollbacks).", callback=_finite
        ),
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule.")] = 7,
    consumer: Annotated[
        bool,
        typer.Option(
            "--consumer/--no-consumer",
            help="Consume the queue through the consumer helper (PROCESSING, then COMPLETED).",
        ),
    ] = True,
    redeliver_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="Share of deliveries redelivered on purpose: a completed message left undeleted (its "
            "visibility timeout brings it back), and as many duplicate sends.",
            callback=_finite,
        ),
    ] = 0.1,
) -> None:
    """The whole promise on an embedded AWS emulator (moto), no account needed.

    Accept messages through the real ingest handler, relay them to SQS through injected faults, consume
    them through the consumer helper with redeliveries injected, and check that every accepted message
    was received, is COMPLETED and had its side effect applied exactly once (with --no-consumer: read the
    queue, and every message is QUEUED). Exits 0 only then, 1 otherwise. Needs the local tools
    (pip install 'dynamodb-sqs-outbox[local]').

    Examples: outbox demo  |  outbox demo --messages 200 --fifo --fail-rate 0.3 --redeliver-rate 0.2
    """
    try:
        from outbox.local.demo import run_demo  # noqa: PLC0415 - moto loads only when a local run needs it
    except ModuleNotFoundError as exc:
        _missing_local_tools("demo", exc)

    raise typer.Exit(
        run_demo(
            console,
            messages=messages,
            fifo=fifo,
            fail_rate=fail_rate,
            seed=seed,
            consumer=consumer,
            redeliver_rate=redeliver_rate,
        )
    )


@app.command()
def relay(
    once: Annotated[
        bool, typer.Option("--once", help="Run one relay invocation and exit (required).")
    ] = False,
    max_seconds: Annotated[
        float,
        typer.Option(
            min=1, max=86_400, help="Time budget of the run, like a Lambda timeout.", callback=_finite
        ),
    ] = 60,
) -> None:
    """Run the relay once with the current environment; print its summary as one JSON line on stdout.

    One pass over every shard: a shard another relay is draining is waited for (up to one lease, 60 s by
    default) rather than skipped; one still held after that counts in shards_busy and drained is false.

    Exit 1 when the run sent nothing and something failed: relay_errors or finalize_failed above 0 (every
    shard stopped on a wrong table name, an endpoint that refuses connections, a missing permission...),
    or sends rolled back or parked as FAILED (a wrong QUEUE_URL...); stderr says why in one line. Exit 0
    otherwise: also when work remains for the next run, or nothing was there to send; when the run sent
    messages but some steps failed, one warning line on stderr. Exit 2 on a configuration or usage error,
    before anything is read.

    Example: outbox relay --once --max-seconds 30
    """
    if not once:
        raise typer.BadParameter("only --once is supported here; `outbox serve` runs a relay on a timer")
    from outbox.ops.invoke import run_relay  # noqa: PLC0415 - the relay loads only when asked for

    settings = Settings.from_env()
    _require_aws()
    summary = run_relay(max_seconds, {WAIT_FOR_BUSY_SHARDS: True})
    print(json.dumps(summary.reported, sort_keys=True), flush=True)
    errors = summary.relay_errors + summary.finalize_failed
    if summary.sent == 0 and (errors or summary.rolled_back or summary.poisoned):
        raise CommandError(f"error: the relay run sent nothing: {_relay_reasons(summary, settings)}")
    if errors:
        _stderr_line(
            f"warning: the relay run sent {summary.sent} but reported {errors} error(s): "
            f"{_relay_reasons(summary, settings, sends=False)}"
        )


@app.command()
def requeue(
    message_id: Annotated[str | None, typer.Argument(help="The FAILED message to send again.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Requeue every FAILED message.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Put a FAILED message back to PENDING, in its place in the outbox (its FIFO group stays in order).

    Example: outbox requeue 0190c6d2-...   or   outbox requeue --all-failed
    """
    from outbox.ops import admin  # noqa: PLC0415

    if all_failed == (message_id is not None):
        raise typer.BadParameter("give a MESSAGE_ID or --all-failed, not both or neither")
    settings = Settings.from_env()
    _require_aws()
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
    console.print(f"requeued {len(results)} message(s)", markup=False, highlight=False)
    for one, why in skipped.items():
        console.print(f"left alone {one}: {why}", markup=False, highlight=False)


dlq_app = typer.Typer(
    help="The dead-letter queue: list what a consumer gave up on, and send it again through the outbox.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(dlq_app, name="dlq")

DlqUrlOption = Annotated[
    str | None,
    typer.Option(
        "--dlq-url",
        envvar="DLQ_URL",
        help="The dead-letter queue (env DLQ_URL; the stack's DeadLetterQueueUrl output).",
        show_default=False,
    ),
]


def _dlq_url(given: str | None) -> str:
    if not given:
        raise CommandError(
            "configuration error: no dead-letter queue: set DLQ_URL (the stack's DeadLetterQueueUrl output, "
            "or what `outbox init`/`serve` exported) or pass --dlq-url",
            2,
        )
    return given


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Read at most this many messages.")] = 100,
    dlq_url: DlqUrlOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the dead-letter queue's messages; each one's message still on its way is marked DEAD_LETTERED
    (with the DLQ's receive count). Reading hides each message from other readers for 30 s.

    Example: outbox dlq list --limit 20
    """
    from outbox.ops import dlq  # noqa: PLC0415

    settings = Settings.from_env()
    url = _dlq_url(dlq_url)
    _require_aws()
    letters = dlq.dead_letters(
        sqs=sqs_client(), dynamodb=dynamodb_client(), settings=settings, dlq_url=url, limit=limit
    )
    rows = [
        {
            "message_id": letter.message_id,
            "status": letter.status,
            "receive_count": letter.receive_count,
            "sent_at": letter.sent_at,
            "last_error": letter.last_error,
        }
        for letter in letters
    ]
    if json_output:
        print(json.dumps(rows))
        return
    table = Table("message_id", "status", "receives", "last error")
    for row in rows:
        table.add_row(
            str(row["message_id"] or "(not ours: no message_id)"),
            str(row["status"] or "(not in the table)"),
            str(row["receive_count"]),
            _shortened(str(row["last_error"] or ""), 60),
        )
    console.print(table)
    console.print(f"{len(rows)} message(s) in the dead-letter queue", markup=False, highlight=False)


@dlq_app.command("redrive")
def dlq_redrive(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Messages to send again.")] = None,
    all_messages: Annotated[
        bool, typer.Option("--all", help="Every message in the dead-letter queue.")
    ] = False,
    dlq_url: DlqUrlOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Send dead-lettered messages again through the outbox (a new entry, the same message_id; the redrive
    counted and timed on the message, and audited), then delete their DLQ copies. A COMPLETED message only
    loses its copy; anything else is left alone with the reason.

    Example: outbox dlq redrive 0190c6d2-...   or   outbox dlq redrive --all
    """
    from outbox.ops import dlq  # noqa: PLC0415

    if all_messages == bool(message_ids):
        raise typer.BadParameter("give MESSAGE_IDS or --all, not both or neither")
    settings = Settings.from_env()
    url = _dlq_url(dlq_url)
    _require_aws()
    results = dlq.redrive(
        None if all_messages else set(message_ids or ()),
        sqs=sqs_client(),
        dynamodb=dynamodb_client(),
        settings=settings,
        dlq_url=url,
        actor=_actor(),
    )
    if json_output:
        print(json.dumps([dataclasses.asdict(result) for result in results]))
        return
    for result in results:
        detail = f": {result.reason}" if result.reason else ""
        console.print(f"{result.outcome} {result.message_id}{detail}", markup=False, highlight=False)
    redriven = sum(result.outcome == "redriven" for result in results)
    console.print(f"redriven {redriven} message(s)", markup=False, highlight=False)


@app.command()
def skip(
    message_id: Annotated[str, typer.Argument(help="The FAILED message whose parked entry to drop.")],
) -> None:
    """Drop a FAILED message's parked entry so its FIFO group moves on; the message stays FAILED.

    Also drops a parked entry whose message is gone (`outbox stats` lists them).

    Example: outbox skip 0190c6d2-...
    """
    from outbox.ops import admin  # noqa: PLC0415

    settings = Settings.from_env()
    _require_aws()
    result = admin.skip(message_id, dynamodb=dynamodb_client(), settings=settings, actor=_actor())
    if result.orphaned:
        console.print(f"dropped the parked entry of {message_id}, whose message was gone", markup=False)
    else:
        console.print(f"skipped {message_id}; it stays FAILED", markup=False, highlight=False)


@app.command("clear-owed-ttl")
def clear_owed_ttl(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """One-off for tables written before 0.2: remove the TTL from every message still owed to the queue.

    Owed: PENDING, or FAILED and not skipped; without a TTL DynamoDB cannot delete it unsent. Safe while
    relays run.

    Example: outbox clear-owed-ttl --dry-run
    """
    from outbox.ops import admin  # noqa: PLC0415

    settings = Settings.from_env()
    _require_aws()
    result = admin.clear_owed_ttl(
        dynamodb_client(),
        settings,
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
        console.print(f"{result.checked:,} owed message(s) carried a TTL; {done}{moved}", highlight=False)


@app.command()
def status(
    message_id: Annotated[str, typer.Argument(help="The message to show.")],
    payload: Annotated[bool, typer.Option("--payload", help="Include the payload and attributes.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show one message's status record, read consistently from the Messages table.

    Example: outbox status 0190c6d2-... --payload
    """
    from outbox.core import exact_json  # noqa: PLC0415
    from outbox.core.domain import is_issued_message_id  # noqa: PLC0415
    from outbox.data.store import MessageStore  # noqa: PLC0415
    from outbox.ingest.service import status_of  # noqa: PLC0415

    if not is_issued_message_id(message_id):  # DynamoDB refuses an over-long key instead of missing it
        raise MessageNotFound(message_id)
    settings = Settings.from_env()
    _require_aws()
    store = MessageStore(
        dynamodb_client(), settings.messages_table, payloads_table=settings.payloads_table, s3=s3_client
    )
    item = store.get_message(message_id)
    if item is None:
        raise MessageNotFound(message_id)
    record = status_of(item, store=store, include_payload=payload)
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
    from outbox.ops import admin  # noqa: PLC0415

    settings = Settings.from_env()
    _require_aws()
    result = admin.stats(dynamodb_client(), settings).as_dict()
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
    port: Annotated[
        int, typer.Option(min=0, max=65_535, help="Port of the local HTTP API (0: any free port).")
    ] = 8080,
    aws_port: Annotated[
        int, typer.Option(min=0, max=65_535, help="Port of the embedded AWS emulator (0: any free port).")
    ] = 0,
    relay_every: Annotated[
        float, typer.Option(min=0.2, help="Seconds between sweeps of every shard.", callback=_finite)
    ] = 5.0,
    fifo: Annotated[bool, typer.Option("--fifo", help="Use a FIFO queue.")] = False,
    consumer: Annotated[
        bool,
        typer.Option(
            "--consumer/--no-consumer",
            help="The example consumer takes messages to COMPLETED; --no-consumer: read the queue yourself.",
        ),
    ] = True,
) -> None:
    """A local stack: embedded AWS emulator, the HTTP API in front of the real ingest handler, the
    relay, woken by the Outbox table's stream and swept on a timer (a POST is queued in about a quarter
    of a second here; `python -m bench.latency` measures it), and the example consumer, which takes each
    message on to PROCESSING and COMPLETED through the consumer helper.

    Prints the endpoints and `export` lines, then one line per relay run that did something
    ("relay: " and its summary as one JSON object; "trigger" says doorbell or sweep) and per consumer
    batch ("consumer: "). Ctrl-C stops everything (exit 0). Needs the local tools
    (pip install 'dynamodb-sqs-outbox[local]').

    Example: outbox serve --port 8080 --relay-every 2
    """
    try:
        from outbox.local.serve import ServeError  # noqa: PLC0415 - moto loads only for a local run
        from outbox.local.serve import serve as run_serve  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        _missing_local_tools("serve", exc)

    try:
        code = run_serve(port=port, aws_port=aws_port, relay_every=relay_every, fifo=fifo, consumer=consumer)
    except ServeError as exc:
        raise CommandError(f"error: {exc}") from None
    raise typer.Exit(code)


# -- helpers -----------------------------------------------------------------------------------------


def _missing_local_tools(command: str, exc: ModuleNotFoundError) -> NoReturn:
    if (exc.name or "").partition(".")[0] in {"outbox", "relay"}:
        raise exc  # our own code missing is a broken install, not a missing extra
    raise CommandError(f"outbox {command} needs the local tools: {LOCAL_EXTRA_HINT}", 2) from None


def _relay_reasons(summary: RelayRun, settings: Settings, *, sends: bool = True) -> str:
    """The run's errors in one line: a reason shared by many shards once, with their count; the failed
    sends (`sends`; their SQS errors are not in the summary); a hint naming what to check."""
    stopped: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for error in summary.errors:
        if match := re.fullmatch(r"shard \d+: (.*)", error):
            stopped[match[1]] += 1
        else:
            other[error] += 1
    parts = [
        f"{count} of {settings.outbox_shards} shard(s) stopped on {reason}"
        for reason, count in stopped.most_common()
    ]
    parts += [reason if count == 1 else f"{reason} (x{count})" for reason, count in other.most_common()]
    if sends and summary.rolled_back:
        parts.append(f"{summary.rolled_back} send(s) to SQS failed, rolled back for a later run")
    if sends and summary.poisoned:
        parts.append(f"{summary.poisoned} message(s) parked as FAILED")
    text = "; ".join(parts) or f"relay_errors={summary.relay_errors}"
    return _shortened(text, 400) + _hint(text, settings)


_HINTS: Final = (
    (
        re.compile(r"EndpointConnectionError|ConnectTimeoutError|ConnectionClosedError|ReadTimeoutError"),
        "could not reach {endpoint}: check AWS_ENDPOINT_URL and the network",
    ),
    (
        re.compile(r"ResourceNotFoundException"),
        "no such table at {endpoint}: check MESSAGES_TABLE={messages}, OUTBOX_TABLE={outbox} and the region",
    ),
    (
        re.compile(r"QueueDoesNotExist|NonExistentQueue|to SQS failed|parked as FAILED"),
        "check QUEUE_URL={queue} and the SQS permissions",
    ),
    (
        re.compile(r"AccessDenied|UnrecognizedClient|InvalidSignature|ExpiredToken|InvalidClientTokenId"),
        "check the AWS credentials and their permissions",
    ),
)
"""The usual causes of a relay run that failed everywhere, and what to check for each."""


def _hint(reasons: str, settings: Settings) -> str:
    for pattern, hint in _HINTS:
        if pattern.search(reasons):
            text = hint.format(
                endpoint=os.environ.get("AWS_ENDPOINT_URL") or "AWS",
                messages=settings.messages_table,
                outbox=settings.outbox_table,
                queue=settings.queue_url,
            )
            return f" ({text})"
    return ""


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name: a container user without a passwd entry
        user = "unknown"
    return f"cli:{user}"


def _progress(line: str) -> None:
    """A progress line on stderr, rewritten in place, for a person watching; nothing when redirected."""
    if err_console.is_terminal:
        err_console.print(line, end="\r", markup=False, highlight=False)


def _shortened(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _stderr_line(text: str) -> None:
    sys.stderr.write(_one_line(text) + "\n")
    sys.stderr.flush()


def _aws_failure(exc: BaseException) -> tuple[str, int]:
    """One line and the exit code for an error botocore raised (directly, or under an outbox error)."""
    if isinstance(exc, _CONFIGURATION_ERRORS):
        problem = {NoRegionError: _NO_REGION, NoCredentialsError: _NO_CREDENTIALS}.get(type(exc), str(exc))
        return f"configuration error: {problem}", 2
    return f"AWS error: {exc}", 1


def _failure(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code for an error a user can cause, or None for a bug (kept as a traceback)."""
    if isinstance(exc, OutboxError) and isinstance(exc.__cause__, (BotoCoreError, ClientError)):
        exc = exc.__cause__  # StoreUnavailable: botocore's own error says more (and may be configuration)
    line: str | None = None
    code = 1
    if isinstance(exc, CommandError):
        line, code = exc.message, exc.exit_code
    elif isinstance(exc, SettingsError):
        line, code = f"configuration error: {exc}", 2
    elif isinstance(exc, InvalidRequest):
        line = f"error: {exc.message}"
    elif isinstance(exc, MessageNotFound):
        line = f"error: no such message: {_shortened(str(exc))}"
    elif isinstance(exc, (BotoCoreError, ClientError)):
        line, code = _aws_failure(exc)
    elif isinstance(exc, OutboxError):
        line = f"error: {exc}"
    elif isinstance(exc, _UsageError):
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "outbox"
        line, code = f"usage error: {exc.format_message()} (see '{command} --help')", 2  # type: ignore[attr-defined]
    elif isinstance(exc, _ClickException):
        line, code = f"error: {exc.format_message()}", int(getattr(exc, "exit_code", 1))  # type: ignore[attr-defined]
    return None if line is None else (line, code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console script: user errors end as one line on stderr and a non-zero exit, never a traceback."""
    try:
        code = _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:  # stdout closed early (`| head`): nothing more to say, and nowhere to say it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    raise SystemExit(code)


def _run(argv: Sequence[str] | None) -> int:
    try:
        code = app(args=argv, prog_name="outbox", standalone_mode=False)
    except typer.Abort:
        _stderr_line("aborted")
        return 130
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `outbox` alone: the help, and exit 2 as click does
            print(exc.format_message())  # type: ignore[attr-defined]
            return 2
        failure = _failure(exc)
        if failure is None:
            raise
        _stderr_line(failure[0])
        return failure[1]
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        _stderr_line("interrupted")
    return int(code or 0)


if __name__ == "__main__":
    main()

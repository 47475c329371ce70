"""`python -m infra.rehearse`: a deployment rehearsed on an embedded emulator, no AWS account needed.

Synthesizes the stack (real bundling), deploys it to a serialized moto server, then runs the handlers
in-process as the deployed functions would run: with each function's environment as the emulator's Lambda
stores it. A message is posted through `outbox.ingest.handler.handler`; the deployed Outbox table's stream,
read as the template's event source mapping reads it (its filter and batch size), wakes
`relay.handler.handler`, which moves the message to the deployed queue; the rehearsal checks it is QUEUED,
receives it, and runs the scheduled sweep, which finds nothing left. moto does not run Lambda (no Docker)
nor create the API or the alarms: the template tests cover those.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from unittest import mock

import boto3

from infra.local_deploy import DeployedStack, deploy, is_stream_mapping
from outbox.cdk import names

CALLER_ARN: Final = f"arn:aws:iam::{names.DEFAULT_ACCOUNT}:user/rehearsal"
PAYLOAD: Final = {"order": 1, "item": "book", "note": "rehearsed"}
RELAY_MODULE: Final = names.RELAY_HANDLER.rpartition(".")[0]
INGEST_MODULE: Final = names.INGEST_HANDLER.rpartition(".")[0]
CONSUMER_MODULE: Final = names.EXAMPLE_CONSUMER_HANDLER.rpartition(".")[0]


@dataclass
class Rehearsal:
    """What happened, step by step; `ok` when every step that could run did what it should."""

    stack: DeployedStack
    fifo: bool
    steps: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    message_id: str | None = None
    final_status: str | None = None
    relay_summary: dict[str, Any] | None = None
    """What the doorbell's invocation of the relay returned."""
    sweep_summary: dict[str, Any] | None = None
    """What the scheduled sweep after it returned."""
    received: dict[str, Any] | None = None
    """The message as the example consumer's SQS mapping handed it over (the Lambda record)."""
    consumer_response: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    """The relay's EMF output: metric name -> value, with namespace and dimensions under `_meta`."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, step: str) -> None:
        (self.steps if condition else self.failures).append(step)

    def report(self) -> str:
        lines = [f"stack {self.stack.name}: {self.stack.status}, {len(self.stack.resources)} resources"]
        if self.stack.skipped:
            lines.append(
                f"  not emulated by moto (template tests cover them): {', '.join(self.stack.skipped)}"
            )
        if "AWS::Lambda::EventSourceMapping" in self.stack.skipped:
            lines.append(
                "  the stream and queue mappings are played by the rehearsal (moto would run them in Docker)"
            )
        lines += [f"  ok   {step}" for step in self.steps]
        lines += [f"  FAIL {failure}" for failure in self.failures]
        lines.append("rehearsal passed" if self.ok else "rehearsal FAILED")
        return "\n".join(lines)


def rehearse(assembly: Path, *, endpoint_url: str, stack_name: str, region: str, fifo: bool) -> Rehearsal:
    """Deploy `assembly` to the emulator at `endpoint_url` and drive a message through it."""
    stack = deploy(
        assembly, stack_name, endpoint_url=endpoint_url, account=names.DEFAULT_ACCOUNT, region=region
    )
    result = Rehearsal(stack, fifo)
    session = boto3.session.Session(region_name=region)
    lambda_client: Any = session.client("lambda", endpoint_url=endpoint_url)
    environment = lambda_client.get_function_configuration(
        FunctionName=stack.outputs[names.OUTPUT_INGEST_FUNCTION]
    )["Environment"]["Variables"]
    result.check(
        environment["MESSAGES_TABLE"] == stack.outputs[names.OUTPUT_MESSAGES_TABLE]
        and environment["QUEUE_URL"] == stack.outputs[names.OUTPUT_QUEUE_URL],
        "deployed function environment names the deployed tables and queue",
    )
    with _function_environment({**environment, "AWS_ENDPOINT_URL": endpoint_url}):
        doorbell = _doorbell(assembly / f"{stack_name}.template.json", stack, session, endpoint_url)
        _ingest(result)
        if result.message_id is not None:
            _relay(result, result.message_id, doorbell, region=region)
    return result


def _doorbell(template_path: Path, stack: DeployedStack, session: Any, endpoint_url: str) -> Any:
    """The template's stream mapping, played on the deployed table's stream from now on (LATEST)."""
    from outbox.local.stream import StreamTail, pattern_of  # noqa: PLC0415 - local-only code

    resources = json.loads(template_path.read_text(encoding="utf-8"))["Resources"]
    (mapping,) = (resource["Properties"] for resource in resources.values() if is_stream_mapping(resource))
    table = stack.resources[mapping["EventSourceArn"]["Fn::GetAtt"][0]]
    stream_arn = session.client("dynamodb", endpoint_url=endpoint_url).describe_table(TableName=table)[
        "Table"
    ]["LatestStreamArn"]
    streams = session.client("dynamodbstreams", endpoint_url=endpoint_url)
    return StreamTail(
        streams, stream_arn, pattern=pattern_of(mapping["FilterCriteria"]), batch_size=mapping["BatchSize"]
    ).start()


def _ingest(result: Rehearsal) -> None:
    ingest = _cold_start(INGEST_MODULE)
    from outbox.local.events import http_api_event, local_context  # noqa: PLC0415 - after the env is set

    body: dict[str, Any] = {"payload": PAYLOAD, "attributes": {"kind": "rehearsal"}}
    if result.fifo:
        body["group_id"] = "rehearsal"
    event = http_api_event(
        "POST",
        "/messages",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Idempotency-Key": f"rehearsal-{uuid.uuid4()}"},
        user_arn=CALLER_ARN,
    )
    response = ingest.handler(event, local_context())
    accepted = json.loads(response["body"])
    result.check(response["statusCode"] == 202, f"POST /messages -> {response['statusCode']} {accepted}")
    result.message_id = accepted.get("message_id")
    if result.message_id is not None:
        result.final_status = _status(ingest, result.message_id)
        result.check(result.final_status == "PENDING", f"GET /messages/{{id}} -> {result.final_status}")


def _relay(result: Rehearsal, message_id: str, doorbell: Any, *, region: str) -> None:
    if importlib.util.find_spec(RELAY_MODULE) is None:
        result.steps.append(f"relay skipped: {RELAY_MODULE} does not exist yet")
        return
    relay = _cold_start(RELAY_MODULE)
    from outbox.local.events import local_context  # noqa: PLC0415

    events = doorbell.poll()
    records = sum(len(event["Records"]) for event in events)
    result.check(records == 1, f"the Outbox stream rang once for the posted message ({records} records)")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # Powertools prints the EMF metrics blob
        for event in events:
            result.relay_summary = relay.handler(event, local_context(60))
        result.sweep_summary = relay.handler(_scheduled_event(region), local_context(60))
    result.metrics = _emf_metrics(printed.getvalue())
    result.check(
        bool(result.relay_summary and result.relay_summary.get("sent") == 1),
        f"relay woken by the stream -> {result.relay_summary}",
    )
    result.check(
        bool(result.sweep_summary and result.sweep_summary.get("sent") == 0),
        f"scheduled sweep after it -> sent {(result.sweep_summary or {}).get('sent')}",
    )
    ingest = _cold_start(INGEST_MODULE, fresh=False)
    status = _status(ingest, message_id)
    result.check(status == "QUEUED", f"message status after the relay -> {status}")
    _consume(result, message_id)
    result.final_status = _status(ingest, message_id)
    result.check(
        result.final_status == "COMPLETED",
        f"message status after the example consumer -> {result.final_status}",
    )
    meta = result.metrics.get("_meta", {})
    result.check(
        meta.get("namespace") == names.METRICS_NAMESPACE
        and meta.get("dimensions", {}).get("service") == names.RELAY_SERVICE
        and {names.OLDEST_PENDING_METRIC, names.POISONED_METRIC} <= result.metrics.keys(),
        f"relay published the alarmed metrics ({names.METRICS_NAMESPACE}, service={names.RELAY_SERVICE})",
    )


def _consume(result: Rehearsal, message_id: str) -> None:
    """The example consumer's SQS mapping, played on the deployed queue: one receive, one invocation of the
    deployed handler with the Lambda event, the records it did not report failed deleted."""
    from outbox.core.clients import sqs_client  # noqa: PLC0415
    from outbox.local.consumer import QueuePoller  # noqa: PLC0415 - local-only code
    from outbox.local.events import local_context  # noqa: PLC0415

    consumer = _cold_start(CONSUMER_MODULE)
    records: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        records.extend(event["Records"])
        result.consumer_response = dict(consumer.handler(event, local_context(30)))
        return result.consumer_response

    delivery = QueuePoller(sqs_client(), os.environ["QUEUE_URL"], invoke).poll()
    result.received = next(
        (r for r in records if r["messageAttributes"].get("message_id", {}).get("stringValue") == message_id),
        None,
    )
    result.check(
        result.received is not None and json.loads(result.received["body"]) == PAYLOAD,
        "the example consumer received the posted payload, with its message_id attribute, from the queue",
    )
    result.check(
        delivery.received == 1 and delivery.failed == 0,
        f"the example consumer completed its batch -> {result.consumer_response}",
    )


def _status(ingest: ModuleType, message_id: str) -> str | None:
    from outbox.local.events import http_api_event, local_context  # noqa: PLC0415

    response = ingest.handler(
        http_api_event("GET", f"/messages/{message_id}", user_arn=CALLER_ARN), local_context()
    )
    status: str | None = json.loads(response["body"]).get("status")
    return status


def _scheduled_event(region: str) -> dict[str, Any]:
    """The EventBridge scheduled event the rule sends to the relay."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": names.DEFAULT_ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{names.DEFAULT_ACCOUNT}:rule/rehearsal"],
        "detail": {},
    }


def _emf_metrics(printed: str) -> dict[str, Any]:
    """Metric values from the EMF JSON Powertools printed, with `_meta` = namespace and dimensions."""
    for line in printed.splitlines():
        with contextlib.suppress(ValueError):
            blob = json.loads(line)
            if isinstance(blob, dict) and "_aws" in blob:
                directive = blob["_aws"]["CloudWatchMetrics"][0]
                dimensions = {name: blob.get(name) for group in directive["Dimensions"] for name in group}
                values = {metric["Name"]: blob.get(metric["Name"]) for metric in directive["Metrics"]}
                return {**values, "_meta": {"namespace": directive["Namespace"], "dimensions": dimensions}}
    return {}


def _cold_start(module_name: str, *, fresh: bool = True) -> ModuleType:
    """The module as a new Lambda container would load it: clients and settings built from this
    environment, not from whatever an earlier run in this process cached at module level."""
    from outbox.core.clients import reset_clients  # noqa: PLC0415

    module = importlib.import_module(module_name)
    if fresh:
        reset_clients()
        for value in vars(module).values():
            clear: Callable[[], None] | None = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
    return module


@contextlib.contextmanager
def _function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """The deployed function's variables for the duration of the run, clients forgotten on both sides."""
    from outbox.core.clients import reset_clients  # noqa: PLC0415

    with mock.patch.dict(os.environ, {**variables, "POWERTOOLS_LOG_LEVEL": "WARNING"}):
        reset_clients()
        try:
            yield
        finally:
            reset_clients()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--fifo", action="store_true", help="rehearse the FIFO variant (context fifo=true)")
    parser.add_argument("--outdir", type=Path, help="cloud assembly folder (default: a temporary one)")
    args = parser.parse_args(argv)
    from infra.app import synthesize  # noqa: PLC0415 - loads the CDK (jsii) only when run
    from outbox.local.emulator import DUMMY_CREDENTIALS, embedded_aws  # noqa: PLC0415 - local-only code

    started = time.perf_counter()
    # moto logs and warns once per resource type it does not emulate; the report lists them once.
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)
    with contextlib.ExitStack() as stack:
        outdir = args.outdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearse-")))
        assembly, config = synthesize(outdir, fifo=args.fifo, example_consumer=True)
        print(f"synthesized {config.stack_name} into {assembly} in {time.perf_counter() - started:.1f} s")
        aws = stack.enter_context(embedded_aws())
        stack.enter_context(
            mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint_url})
        )
        result = rehearse(
            assembly,
            endpoint_url=aws.endpoint_url,
            stack_name=config.stack_name,
            region=config.region,
            fifo=config.fifo,
        )
    print(result.report())
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

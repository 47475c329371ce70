"""Deploy a synthesized cloud assembly to an AWS emulator without the CDK CLI (docs/design.md §8).

What `cdk deploy` does, minus change sets: upload each file asset to its bootstrap bucket (folders zipped),
record the bootstrap version CDK templates check, then `CreateStack` with the template. Fast and reliable on
moto, whose change-set path has bugs. moto's CloudFormation skips some resource types (API Gateway v2,
alarms, queue and topic policies, Lambda event-invoke configs), and the rehearsal leaves out the event
source mappings (see `_adapted_for_moto`); `DeployedStack.skipped` lists them.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import ClientError

BOOTSTRAP_VERSION_PARAMETER: Final = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION: Final = "30"
CAPABILITIES: Final = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND")


class DeployError(RuntimeError):
    """The stack did not reach CREATE_COMPLETE; the message has CloudFormation's reason."""


@dataclass(frozen=True)
class DeployedStack:
    name: str
    status: str
    outputs: dict[str, str]
    resources: dict[str, str]
    """Logical id -> physical id of every resource the emulator created."""
    skipped: list[str]
    """Resource types in the template that the emulator did not create."""


def deploy(assembly: Path, stack_name: str, *, endpoint_url: str, account: str, region: str) -> DeployedStack:
    session = boto3.session.Session(region_name=region)
    clients: dict[str, Any] = {
        name: session.client(name, endpoint_url=endpoint_url) for name in ("s3", "ssm", "cloudformation")
    }
    _publish_assets(clients["s3"], assembly / f"{stack_name}.assets.json", account=account, region=region)
    clients["ssm"].put_parameter(
        Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )
    template = json.loads((assembly / f"{stack_name}.template.json").read_text(encoding="utf-8"))
    cloudformation = clients["cloudformation"]
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(_adapted_for_moto(template, stack_name)),
        Capabilities=list(CAPABILITIES),
    )
    stack = _wait(cloudformation, stack_name)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise DeployError(f"{stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    summaries = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    created = {item["LogicalResourceId"]: item["PhysicalResourceId"] for item in summaries}
    skipped = sorted(
        {resource["Type"] for logical, resource in template["Resources"].items() if logical not in created}
    )
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    return DeployedStack(stack_name, stack["StackStatus"], outputs, created, skipped)


def _adapted_for_moto(template: dict[str, Any], stack_name: str) -> dict[str, Any]:
    """Two changes, each for a moto behaviour AWS does not have:

    - CloudFormation names an unnamed FIFO queue with the `.fifo` suffix SQS requires; moto does not, so
      the rehearsal names such queues itself;
    - moto runs the function of an event source mapping in Docker (a DynamoDB stream's synchronously, on
      every write to the table, failing the write's request without Docker; an SQS queue's on every
      send), so mappings are left out (listed in `DeployedStack.skipped`); the rehearsal plays them itself
      from the template's properties (infra/rehearse.py, outbox/local/stream.py, outbox/local/consumer.py)."""
    adapted: dict[str, Any] = json.loads(json.dumps(template))
    adapted["Resources"] = {
        logical_id: resource
        for logical_id, resource in adapted["Resources"].items()
        if resource.get("Type") != "AWS::Lambda::EventSourceMapping"
    }
    for logical_id, resource in adapted["Resources"].items():
        properties = resource.get("Properties", {})
        if (
            resource["Type"] == "AWS::SQS::Queue"
            and properties.get("FifoQueue")
            and "QueueName" not in properties
        ):
            properties["QueueName"] = f"{stack_name}-{logical_id}"[:75] + ".fifo"
    return adapted


def is_stream_mapping(resource: dict[str, Any]) -> bool:
    """An event source mapping whose source is a DynamoDB table's stream (`Fn::GetAtt [table, StreamArn]`)."""
    if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
        return False
    source = resource.get("Properties", {}).get("EventSourceArn")
    return isinstance(source, dict) and source.get("Fn::GetAtt", [None, None])[1] == "StreamArn"


def _publish_assets(s3: Any, manifest: Path, *, account: str, region: str) -> None:
    files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    for asset in files.values():
        source = manifest.parent / asset["source"]["path"]
        body = _zip(source) if asset["source"].get("packaging") == "zip" else source.read_bytes()
        for destination in asset["destinations"].values():
            bucket = destination["bucketName"].replace("${AWS::AccountId}", account)
            bucket = bucket.replace("${AWS::Region}", region)
            _ensure_bucket(s3, bucket)
            s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _wait(cloudformation: Any, stack_name: str, timeout_seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return stack
        time.sleep(0.2)

"""The local deploy rehearsal (`python -m infra.rehearse`) as a test: the bundled stack deploys to the moto
server and a message posted through the deployed tables is queued, arrives in the deployed queue, and the
example consumer (its SQS mapping played by the rehearsal) takes it to COMPLETED."""

from __future__ import annotations

import pytest

from infra import PROJECT_ROOT
from infra.rehearse import rehearse
from outbox.cdk import names
from outbox.local.emulator import EmbeddedAws
from tests.infra.stack_support import Synthesized


@pytest.mark.server
# moto's CloudFormation warns for each resource type it does not emulate (API, alarms, policies).
@pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")
def test_rehearsal_end_to_end(
    bundled: Synthesized, moto_server: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    result = rehearse(
        bundled.outdir,
        endpoint_url=moto_server.endpoint_url,
        stack_name=bundled.config.stack_name,
        region=bundled.config.region,
        fifo=False,
    )
    assert result.stack.status == "CREATE_COMPLETE", result.report()
    assert result.failures == [], result.report()
    assert set(result.stack.outputs) >= {names.OUTPUT_MESSAGES_TABLE, names.OUTPUT_QUEUE_URL}
    assert "AWS::ApiGatewayV2::Api" in result.stack.skipped  # covered by the template tests instead
    assert "AWS::DynamoDB::Table" not in result.stack.skipped
    assert "AWS::CloudWatch::Dashboard" not in result.stack.skipped  # moto creates it (ADR 0022)
    if not (PROJECT_ROOT / "relay" / "handler.py").exists():
        pytest.skip("ingest rehearsed; relay/handler.py does not exist yet, so nothing reaches the queue")
    assert result.final_status == "COMPLETED", result.report()
    assert result.received is not None
    assert result.received["messageAttributes"]["message_id"]["stringValue"] == result.message_id
    assert result.consumer_response == {"batchItemFailures": []}
    assert names.OUTPUT_EXAMPLE_CONSUMER_FUNCTION in result.stack.outputs
    assert result.relay_summary is not None
    assert result.relay_summary["sent"] == 1
    assert result.metrics[names.OLDEST_PENDING_METRIC] is not None

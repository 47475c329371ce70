"""`python -m chaos.relay_process --seed N --fault-rate F --max-seconds S`: one relay run in a process of
its own, with the scenario's faults on its clients, for the chaos runner to SIGKILL at random moments.

It is `outbox relay --once` plus fault injection: the same `Relay`, clients built the same way from the
environment. Every half second it prints the faults injected so far as one JSON line (`{"faults": ...}`),
so a process killed mid-run still reports all but its last half second; a run that ends prints its summary
(`{"summary": ...}`) last.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

from chaos.kills import (
    RELAY_CONFIG,
    RELAY_DYNAMODB_FAULTS,
    RELAY_RETRIES,
    RELAY_SQS_FAULTS,
    fault_counts,
    install_faults,
)
from chaos.ledger import DedupLedger
from outbox.core.clients import dynamodb_client, sqs_client
from outbox.core.settings import Settings
from outbox.testing.calls import CallCounter
from outbox.testing.faults import FaultInjector
from relay.core import Relay

REPORT_INTERVAL_SECONDS = 0.5


def injected(injectors: list[FaultInjector], calls: CallCounter) -> dict[str, object]:
    """Faults so far, by kind and by operation, and the API calls they were drawn from."""
    by_kind, by_operation = fault_counts(injectors)
    return {"by_kind": dict(by_kind), "by_operation": dict(by_operation), "calls": calls.total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.relay_process", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--fault-rate", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--dedup-ledger", type=Path, help="FIFO: the scenario's DedupLedger file")
    args = parser.parse_args(argv)
    ledger = DedupLedger(args.dedup_ledger) if args.dedup_ledger else None
    dynamodb, sqs = dynamodb_client(), sqs_client()
    injectors = [
        install_faults(dynamodb, RELAY_DYNAMODB_FAULTS, args.fault_rate, args.seed),
        install_faults(sqs, RELAY_SQS_FAULTS, args.fault_rate, args.seed + 1, ledger),
    ]
    calls = CallCounter(dynamodb, sqs)
    relay = Relay(
        dynamodb=dynamodb,
        sqs=sqs,
        settings=Settings.from_env(),
        retry_policy=RELAY_RETRIES,
        config=RELAY_CONFIG,
        rng=random.Random(args.seed),  # noqa: S311 - a reproducible schedule, not security
    )
    done = threading.Event()

    def report() -> None:
        while not done.wait(REPORT_INTERVAL_SECONDS):
            print(json.dumps({"faults": injected(injectors, calls)}), flush=True)

    threading.Thread(target=report, name="fault-report", daemon=True).start()
    summary = relay.run(time.monotonic() + args.max_seconds)
    done.set()
    print(json.dumps({"faults": injected(injectors, calls)}), flush=True)
    print(json.dumps({"summary": summary.as_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

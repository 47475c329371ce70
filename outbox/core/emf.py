"""Publishing a function's metrics once per invocation (EMF, through Powertools `Metrics`)."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled


def flush(sink: Metrics) -> None:
    """Print the invocation's metrics, or drop them where metrics are disabled (local runs, ADR 0016).

    Not `@metrics.log_metrics`: with `POWERTOOLS_METRICS_DISABLED` its flush keeps the values, so a
    long-lived local process (`outbox serve`) would add every invocation's counts to the next one's."""
    if is_metrics_disabled():
        sink.clear_metrics()
    else:
        sink.flush_metrics()

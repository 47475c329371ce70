"""Trace context carried from the POST to the consumer (ADR 0021): one X-Ray trace header per message.

The header is what SQS carries as the `AWSTraceHeader` system attribute and what Lambda and X-Ray read.
A W3C `traceparent` maps onto it without loss: X-Ray trace ids are W3C trace ids written
`1-<first 8 hex>-<last 24 hex>` (AWS X-Ray developer guide, "Tracing header"; W3C Trace Context §3.2). So a
client's `traceparent` costs no message attribute (the caller keeps all nine of its own), and a consumer
gets it back with `traceparent_of`.

Values that do not parse are ignored, never an error: a trace header is a hint (W3C Trace Context says a
vendor must ignore a malformed `traceparent`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

XRAY_ENVIRONMENT: Final = "_X_AMZN_TRACE_ID"
"""Where Lambda puts the invocation's trace header (with active tracing, or one passed in)."""
XRAY_HEADER: Final = "x-amzn-trace-id"
TRACEPARENT_HEADER: Final = "traceparent"
MAX_HEADER_LENGTH: Final = 256

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ROOT: Final = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})")
_SPAN: Final = re.compile(r"[0-9a-f]{16}")


def xray_from_traceparent(traceparent: str) -> str | None:
    """`00-<trace>-<span>-<flags>` as `Root=1-…;Parent=<span>;Sampled=<0|1>`, or None if malformed."""
    match = _TRACEPARENT.fullmatch(traceparent.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    sampled = int(flags, 16) & 1
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={sampled}"


def traceparent_of(xray_header: str) -> str | None:
    """The W3C `traceparent` of an X-Ray header that names a parent, or None."""
    fields = _fields(xray_header)
    root = _ROOT.fullmatch(fields.get("Root", ""))
    parent = fields.get("Parent", "")
    if root is None or _SPAN.fullmatch(parent) is None:
        return None
    flags = "01" if fields.get("Sampled") == "1" else "00"
    return f"00-{root.group(1)}{root.group(2)}-{parent}-{flags}"


def valid_xray_header(value: str | None) -> str | None:
    """`value` if it is an X-Ray trace header with a well-formed `Root` (and not over-long), else None."""
    if not value or len(value) > MAX_HEADER_LENGTH:
        return None
    return value if _ROOT.fullmatch(_fields(value).get("Root", "")) else None


def request_trace(headers: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str | None:
    """The trace a request belongs to: the function's own (Lambda's `_X_AMZN_TRACE_ID`, which continues
    the caller's when there is one), else the request's X-Ray header, else its W3C `traceparent`."""
    environment = os.environ if environ is None else environ
    for candidate in (environment.get(XRAY_ENVIRONMENT), headers.get(XRAY_HEADER)):
        if (header := valid_xray_header(candidate)) is not None:
            return header
    traceparent = headers.get(TRACEPARENT_HEADER)
    return xray_from_traceparent(traceparent) if traceparent else None


def _fields(header: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in header.split(";") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs}

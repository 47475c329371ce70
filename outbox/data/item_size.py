"""DynamoDB's billable size of an item, from its low-level form: what decides whether a payload stays in its
message item (ADR 0023) and what the benchmark bills (`bench.units`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def number_size(text: str) -> int:
    """DynamoDB's number size: 1 byte per two significant digits, plus 1."""
    digits = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return math.ceil(max(len(digits), 1) / 2) + 1


def _scalar_size(kind: str, data: Any) -> int:
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else len(str(data))
    return 1  # BOOL, NULL


def value_size(value: Mapping[str, Any]) -> int:
    """Size of one attribute value in DynamoDB's low-level form ({"S": ...}, {"M": {...}}, ...)."""
    (kind, data), *_ = value.items()
    if kind in {"SS", "NS", "BS"}:
        return sum(_scalar_size(kind[0], element) for element in data)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(element) + 1 for name, element in data.items())
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in data)
    if kind in {"S", "N", "B", "BOOL", "NULL"}:
        return _scalar_size(kind, data)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """An item's billable size: Σ (attribute name length + value size); 0 for no item."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())

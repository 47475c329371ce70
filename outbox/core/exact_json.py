"""JSON whose numbers stay exactly what was written: read as `Decimal`, written back as exact decimal text.

The standard library's `json` reads every number with a fraction or an exponent into a float, so
`12345678901234567890.12` became `1.2345678901234567e+19` on its way to the queue (issue 12). Reading is
still `json.loads`, with its documented `parse_float=Decimal` hook; writing cannot be `json.dumps`, which
has no way to emit a `Decimal` as a number, so `dumps` below walks the value itself. Strings are quoted by
`json.encoder.encode_basestring_ascii`, the escaper `json.dumps(ensure_ascii=True)` uses; `int` and
`float` are written with `int.__repr__` and `float.__repr__`, as `json.dumps` writes them; a finite
`Decimal` is written as `str(value)`, which is always a valid JSON number (`-0`, `1E+400`, `0.000`) and
exact. The tests check `dumps` against `json.dumps` on everything both can write.

Why not a library (`simplejson`'s `use_decimal`): the request hash needs numbers in a canonical form by
value (`1.0` and `1.00` are one number), which no JSON library writes, so a walk is needed anyway; this
walk also does the payload checks that used to be a walk of their own; and the module is imported by the
relay (through `outbox.data.transactions`), whose cold start would pay for a C extension it never uses, while
the Lambda asset would gain a platform-specific wheel. Everything here is the standard library.
"""

from __future__ import annotations

import decimal
import json
import math
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Final

PLAIN_TRAILING_ZEROS: Final = 16
"""In the canonical form, a whole number with at most this many trailing zeros is written out in full
(`100`, as `json.dumps` writes an int, so hashes of integer payloads did not change); one with more is
written in exponent form (`1E+17`), so `1e999999999` stays 12 characters instead of a gigabyte."""

_EXACT: Final = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
"""A context that never rounds: `normalize` only strips trailing zeros under it."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TEN_TO_THE_PLAIN_LIMIT: Final = 10 ** (PLAIN_TRAILING_ZEROS + 1)


class UnfitValue(ValueError):
    """A value that JSON cannot carry faithfully. `code` is the outbox's error code for it, `problem` a
    phrase to follow the value's name ("payload contains NaN or Infinity")."""

    def __init__(self, code: str, problem: str) -> None:
        super().__init__(problem)
        self.code = code
        self.problem = problem


def loads(text: str, **hooks: Any) -> Any:
    """`json.loads` with every number that has a fraction or an exponent read as an exact `Decimal`.

    Integers stay `int` (exact already); one longer than Python's int digit limit raises `ValueError`,
    as `json.loads` does. `hooks` are passed on (`object_pairs_hook`, `parse_constant`).
    """
    return json.loads(text, parse_float=Decimal, **hooks)


def dumps(
    value: object, *, max_depth: int | None = None, sort_keys: bool = False, canonical: bool = False
) -> str:
    """Compact, ASCII-only JSON for `value`, every number exact; `UnfitValue` for what JSON cannot carry.

    Refused: NaN and Infinity (float or Decimal), strings or keys with a lone UTF-16 surrogate, non-string
    keys, an `int` past Python's int digit limit, any type that is not None, bool, int, float, Decimal,
    str, list or dict, and values nested deeper than `max_depth` (the top value is at depth 1).

    A `float` is written as `repr` writes it: the shortest decimal that reads back as the same double
    (`0.1`, not the double's exact `0.1000000000000000055511151231257827`). With `canonical`, numbers are
    written by value (`canonical_number`), so numerically equal documents give the same text.
    """
    parts: list[str] = []
    append = parts.append
    scalars = _CANONICAL_SCALARS if canonical else _SCALARS
    limit = max_depth if max_depth is not None else sys.maxsize

    def write(item: object, depth: int) -> None:
        if depth > limit:
            raise UnfitValue("too_deep", f"nests deeper than {max_depth} levels")
        scalar = scalars.get(type(item))
        if scalar is not None:
            append(scalar(item))
        elif isinstance(item, list):
            append("[")
            for index, element in enumerate(item):
                if index:
                    append(",")
                write(element, depth + 1)
            append("]")
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                raise UnfitValue("invalid_json", "has a non-string object key")
            append("{")
            for index, (key, element) in enumerate(sorted(item.items()) if sort_keys else item.items()):
                if index:
                    append(",")
                append(_quoted(key))
                append(":")
                write(element, depth + 1)
            append("}")
        else:
            append(_subclass_scalar(item, scalars))

    write(value, 1)
    return "".join(parts)


def canonical_number(value: Decimal) -> str:
    """One text per finite numeric value: `1`, `1.0`, `1.00` and `1E+0` are all `1`; `-0` is `0`.

    Trailing zeros of the coefficient are dropped; a whole number with at most `PLAIN_TRAILING_ZEROS`
    trailing zeros is written out in full, anything else as `str` writes a normalised Decimal (`2.5`,
    `1E-7`, `1E+400`). Exact: no rounding at any precision.
    """
    if not value:
        return "0"
    normal = value.normalize(_EXACT)
    text = str(normal)
    if "E+" not in text:
        return text
    mantissa = text.partition("E")[0]
    digits = len(mantissa) - ("." in mantissa) - mantissa.startswith("-")
    exponent = normal.adjusted() - digits + 1
    return format(normal, "f") if exponent <= PLAIN_TRAILING_ZEROS else text


def _canonical_int(value: int) -> str:
    if value % _TEN_TO_THE_PLAIN_LIMIT or not value:
        return _int_text(value)
    return canonical_number(Decimal(value))


def _int_text(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:  # past sys.get_int_max_str_digits(): converting it would take quadratic time
        raise UnfitValue(
            "invalid_number",
            f"has an integer of more than {sys.get_int_max_str_digits()} digits; "
            "pass a number that long as a decimal.Decimal",
        ) from None


def _quoted(text: str) -> str:
    if _SURROGATE.search(text):
        raise UnfitValue("invalid_unicode", "contains a lone UTF-16 surrogate")
    return encode_basestring_ascii(text)


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        raise UnfitValue("invalid_number", "contains NaN or Infinity")
    return float.__repr__(value)


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise UnfitValue("invalid_number", "contains NaN or Infinity")
    return Decimal.__str__(value)


def _canonical_float(value: float) -> str:
    return canonical_number(Decimal(_float_text(value)))


def _canonical_decimal(value: Decimal) -> str:
    _decimal_text(value)  # refuses NaN and Infinity
    return canonical_number(value)


def _null(_: None) -> str:
    return "null"


def _bool(value: bool) -> str:
    return "true" if value else "false"


_SCALARS: Final[dict[type, Callable[[Any], str]]] = {
    str: _quoted,
    int: _int_text,
    float: _float_text,
    bool: _bool,
    type(None): _null,
    Decimal: _decimal_text,
}
_CANONICAL_SCALARS: Final[dict[type, Callable[[Any], str]]] = {
    **_SCALARS,
    int: _canonical_int,
    float: _canonical_float,
    Decimal: _canonical_decimal,
}


def _subclass_scalar(item: object, scalars: dict[type, Callable[[Any], str]]) -> str:
    """A subclass of a scalar type (an `IntEnum`, a `str` subclass) is written as its base type is."""
    for kind in (bool, int, float, Decimal, str):
        if isinstance(item, kind):
            return scalars[kind](item)
    raise UnfitValue("invalid_json", f"contains a {type(item).__name__}, not a JSON value")

"""Payload numbers reach the consumer with exactly the value the client wrote (issue 12, item 1).

Each check reads what was stored or received with `parse_float=Decimal`, so a number that went through a
float on the way (`12345678901234567890.12` → `1.2345678901234567e+19`) fails it.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outbox import InvalidRequest, enqueue, outbox_write
from outbox.core.domain import request_hash
from outbox.core.exact_json import canonical_number, dumps
from outbox.core.validation import validate_message
from outbox.ingest import handler as ingest
from outbox.local.events import http_api_event, local_context
from outbox.local.queue import message_id_of
from tests.conftest import Outbox, call_ingest, make_relay, receive_all, run_relay

EXACT_NUMBERS = [
    "12345678901234567890.12",  # a float would make it 1.2345678901234567e+19
    "0.1000000000000000055511151231257827",  # ... 0.1
    "9007199254740993.0",  # ... 9007199254740992.0 (2**53 + 1 is not a double)
    "1e-400",  # ... 0.0 (below the smallest double)
    "1e400",  # ... Infinity, which used to be refused as "NaN or Infinity"
    "-0.0",
    "2.50",
    "123456789012345678901234567890",
]


def _exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _stored_payload(outbox: Outbox, message_id: str) -> str:
    item = outbox.message(message_id)
    assert item is not None
    return str(item["payload"]["S"])


@pytest.mark.parametrize("literal", EXACT_NUMBERS)
def test_a_posted_number_is_stored_with_its_exact_value(outbox: Outbox, literal: str) -> None:
    status, body, _ = call_ingest("POST", "/messages", raw_body=f'{{"payload": {{"amount": {literal}}}}}')

    assert status == 202
    stored = _stored_payload(outbox, body["message_id"])
    assert _exact(stored) == {"amount": Decimal(literal)}
    assert stored.isascii()


def test_the_consumer_receives_the_exact_numbers_after_a_relay_run(outbox: Outbox) -> None:
    raw = '{"payload": {"amounts": [' + ", ".join(EXACT_NUMBERS) + '], "n": 7}}'
    status, body, _ = call_ingest("POST", "/messages", raw_body=raw)
    assert status == 202

    summary = run_relay(make_relay(outbox))

    assert summary.sent == 1
    (received,) = receive_all(outbox.resources.queue_url)
    assert message_id_of(received) == body["message_id"]
    assert _exact(received["Body"]) == {"amounts": [Decimal(n) for n in EXACT_NUMBERS], "n": 7}
    assert _exact(received["Body"])["amounts"][0] == Decimal("12345678901234567890.12")


def test_the_status_view_shows_the_payload_with_its_exact_numbers_as_valid_json(outbox: Outbox) -> None:
    raw = '{"payload": {"big": 1e400, "amount": 12345678901234567890.12, "tiny": 1e-400}}'
    status, accepted, _ = call_ingest("POST", "/messages", raw_body=raw)
    assert status == 202
    event_path = f"/messages/{accepted['message_id']}"

    response = ingest.handler(
        http_api_event("GET", event_path, query={"include": "payload"}), local_context()
    )

    assert response["statusCode"] == 200
    record = json.loads(response["body"], parse_float=Decimal, parse_constant=_no_constants)
    assert record["payload"] == {
        "big": Decimal("1e400"),
        "amount": Decimal("12345678901234567890.12"),
        "tiny": Decimal("1e-400"),
    }


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("0.1", "0.1000000000000000055511151231257827", 409),  # one double, two numbers
        ("9007199254740992.0", "9007199254740993.0", 409),
        ("1e-400", "0.0", 409),
        ("1.0", "1.00", 200),  # numerically equal: a replay
        ("1", "1.0", 200),
        ("1e2", "100", 200),
        ("-0", "0.0", 200),
    ],
)
def test_one_key_with_numbers_that_differ_in_value_is_a_conflict_and_equal_values_a_replay(
    outbox: Outbox, first: str, second: str, expected: int
) -> None:
    headers = {"Idempotency-Key": "order-1"}
    status, accepted, _ = call_ingest(
        "POST", "/messages", raw_body=f'{{"payload": {first}}}', headers=headers
    )
    assert status == 202

    status, body, _ = call_ingest("POST", "/messages", raw_body=f'{{"payload": {second}}}', headers=headers)

    assert status == expected
    if expected == 409:
        assert body["error"]["code"] == "idempotency_key_reused"
    else:
        assert body["message_id"] == accepted["message_id"]
    assert outbox.counts() == (1, 1)
    assert _exact(_stored_payload(outbox, accepted["message_id"])) == Decimal(first)  # the first one stays


def test_an_integer_past_pythons_digit_limit_is_refused_with_a_message_that_says_so(outbox: Outbox) -> None:
    status, body, _ = call_ingest("POST", "/messages", raw_body='{"payload": ' + "9" * 5000 + "}")

    assert status == 400
    assert "integer of more than 4300 digits" in body["error"]["message"]
    assert outbox.counts() == (0, 0)


def test_the_library_writes_decimals_huge_ints_and_floats_exactly(outbox: Outbox) -> None:
    payload = {
        "decimal": Decimal("12345678901234567890.12"),
        "tiny": Decimal("1E-400"),
        "int": 10**40 + 1,
        "float": 0.1,
        "big_float": 1e22,
        "whole_float": 3.0,
    }

    accepted = enqueue(payload, settings=outbox.settings)

    stored = _stored_payload(outbox, accepted.message_id)
    assert _exact(stored) == {
        "decimal": Decimal("12345678901234567890.12"),
        "tiny": Decimal("1E-400"),
        "int": 10**40 + 1,
        "float": Decimal("0.1"),  # a float is its repr: the double's shortest round-tripping text
        "big_float": Decimal("1e22"),
        "whole_float": Decimal("3.0"),
    }
    assert json.loads(stored)["float"] == 0.1  # and reads back as the very same double
    assert '"int":10000000000000000000000000000000000000001' in stored


def test_outbox_write_carries_a_decimal_exactly(outbox: Outbox) -> None:
    write = outbox_write([Decimal("9007199254740993.0")], settings=outbox.settings)

    put = write.items[0]["Put"]
    assert _exact(put["Item"]["payload"]["S"]) == [Decimal("9007199254740993.0")]


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ({"x": Decimal("NaN")}, "invalid_number", "NaN or Infinity"),
        ([Decimal("-Infinity")], "invalid_number", "NaN or Infinity"),
        (Decimal("sNaN"), "invalid_number", "NaN or Infinity"),
        (float("inf"), "invalid_number", "NaN or Infinity"),
        ({"n": 10**5000}, "invalid_number", "integer of more than"),
    ],
)
def test_the_library_refuses_what_it_cannot_carry_without_a_traceback(
    outbox: Outbox, payload: object, code: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        enqueue(payload, settings=outbox.settings)
    assert caught.value.code == code
    assert words in caught.value.message
    assert outbox.counts() == (0, 0)


def test_a_float_and_its_repr_posted_over_http_are_one_request(outbox: Outbox) -> None:
    from_library = validate_message({"p": 0.1}, fifo=False, max_payload_bytes=1000)
    over_http = validate_message({"p": Decimal("0.1")}, fifo=False, max_payload_bytes=1000)

    assert from_library.payload_json == over_http.payload_json == '{"p":0.1}'
    assert request_hash(from_library.payload_json, {}, None) == request_hash(over_http.payload_json, {}, None)


def test_integer_payloads_hash_as_they_did_before_exact_numbers() -> None:
    """Keys already used with integer payloads stay valid: the old hash was sorted-key json.dumps (the
    exception, documented: a whole number with more than 16 trailing zeros)."""
    payload_json = '{"b":[1,-20,12345678901234567890123,10000000000000000],"a":"x\\u00e9","c":null,"d":true}'
    old_canonical = json.dumps(
        {"payload": json.loads(payload_json), "attributes": {"k": "v"}, "group_id": "g"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    new_canonical = dumps(
        {"payload": json.loads(payload_json), "attributes": {"k": "v"}, "group_id": "g"},
        sort_keys=True,
        canonical=True,
    )
    assert new_canonical == old_canonical
    old_hash = hashlib.sha256(old_canonical.encode("ascii")).hexdigest()
    assert request_hash(payload_json, {"k": "v"}, "g") == old_hash


finite_decimals = st.decimals(allow_nan=False, allow_infinity=False)
unicode_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))  # no lone surrogates
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(unicode_text, children, max_size=4),
    max_leaves=20,
)
EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite_decimals, min_size=1, max_size=8))
def test_arbitrary_decimals_round_trip_exactly(numbers: list[Decimal]) -> None:
    request = validate_message({"numbers": numbers}, fifo=False, max_payload_bytes=256 * 1024)

    assert _exact(request.payload_json) == {"numbers": numbers}


@settings(max_examples=300, deadline=None)
@given(finite_decimals, st.integers(min_value=0, max_value=30))
def test_the_hash_sees_values_not_spellings(number: Decimal, extra_zeros: int) -> None:
    """`number` with more trailing zeros (`2.5` → `2.500`) is the same number: same canonical text, same
    hash; the next number up in its last digit is a different one."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    padded = Decimal((sign, (*digits, *([0] * extra_zeros)), exponent - extra_zeros))
    assert padded == number
    assert canonical_number(padded) == canonical_number(number)
    assert Decimal(canonical_number(number)) == number
    assert request_hash(dumps([padded]), {}, None) == request_hash(dumps([number]), {}, None)
    neighbour = EXACT.add(number, Decimal((0, (1,), exponent - extra_zeros - 1)))
    assert neighbour != number
    assert request_hash(dumps([neighbour]), {}, None) != request_hash(dumps([number]), {}, None)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_dumps_writes_what_json_dumps_writes_for_plain_json(value: object) -> None:
    """Differential: on everything `json.dumps` can write, the exact writer gives the same text."""
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert dumps(value, sort_keys=True) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=True, allow_nan=False, sort_keys=True
    )


def test_an_int_past_the_digit_limit_is_refused_whatever_the_limit_says() -> None:
    limit = sys.get_int_max_str_digits()
    with pytest.raises(InvalidRequest, match=f"more than {limit} digits"):
        validate_message(10 ** (limit + 1), fifo=False, max_payload_bytes=256 * 1024)

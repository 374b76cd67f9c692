"""RFC 8785 (JCS), the signed form of permits and face events: the RFC's own examples as byte
tables, and the three implementations cross-checked against each other.

- `drivers.ledger.jcs` / `signing_bytes`: the gateway's, the rfc8785 package;
- `firmware_sim.ledger.canonical_json`: the reference ledger's, written independently;
- `firmware_sim.face_terminal.canonical`: the simulated terminal's, for flat event bodies.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.face.codec import canonical_bytes as face_canonical_bytes
from drivers.ledger import MAX_SAFE_INTEGER, jcs, signing_bytes
from firmware_sim.face_terminal import canonical as terminal_canonical
from firmware_sim.ledger import canonical_json as ledger_canonical_json


def both(value: Any) -> bytes:
    """The gateway's and the reference ledger's bytes, which must be the same."""
    gw, led = jcs(value), ledger_canonical_json(value)
    assert gw == led, (value, gw, led)
    return gw


def _double(hex64: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(hex64))[0])


# RFC 8785 Appendix B, "Number Serialization Samples": IEEE 754 bits -> JSON number.
RFC_NUMBERS = [
    ("0000000000000000", "0"),  # zero
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),  # min positive
    ("8000000000000001", "-5e-324"),  # min negative
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # max positive
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # max negative
    ("4340000000000000", "9007199254740992"),  # max positive integer
    ("c340000000000000", "-9007199254740992"),  # max negative integer
    ("4430000000000000", "295147905179352830000"),  # ~2**68
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # round to even
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS, ids=[b for b, _ in RFC_NUMBERS])
def test_rfc_8785_number_samples(bits: str, text: str) -> None:
    assert both(_double(bits)) == text.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc_8785_nan_and_infinity_have_no_form(bits: str) -> None:
    with pytest.raises(ValueError):
        jcs(_double(bits))
    with pytest.raises(ValueError):
        ledger_canonical_json(_double(bits))


def test_rfc_8785_section_3_2_2_example() -> None:
    # The RFC's example input, as JSON text (the number and string forms are the point).
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert both(json.loads(text)) == expected


def test_rfc_8785_section_3_2_3_sorting_example() -> None:
    text = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    out = both(json.loads(text))
    assert [v for v in json.loads(out).values()] == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert out.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control",')


# Bytes worked out by hand from RFC 8785 (and what JavaScript's JSON.stringify writes), for
# what the old form (Python's json.dumps) wrote differently or where an implementation slips.
CROSS_CHECKED: list[tuple[str, Any, bytes]] = [
    ("float 1e-7", 1e-7, b"1e-7"),
    ("float 1e-6 is plain", 1e-6, b"0.000001"),
    ("integral float", 1700000000.0, b"1700000000"),
    ("float 0.1", 0.1, b"0.1"),
    ("float 20.9", 20.9, b"20.9"),
    ("float 1e21", 1e21, b"1e+21"),
    ("float 1e20 is plain", 1e20, b"100000000000000000000"),
    ("float 1e16", 1e16, b"10000000000000000"),
    ("minus zero", -0.0, b"0"),
    ("negative small", -1.5e-9, b"-1.5e-9"),
    ("largest safe integer", MAX_SAFE_INTEGER, b"9007199254740991"),
    ("smallest safe integer", -MAX_SAFE_INTEGER, b"-9007199254740991"),
    ("zero", 0, b"0"),
    ("literals", [None, True, False], b"[null,true,false]"),
    ("non-BMP text as UTF-8", "\U0001f600", '"\U0001f600"'.encode()),
    ("escapes: quote, backslash, short forms", '"\\\b\f\n\r\t', b'"\\"\\\\\\b\\f\\n\\r\\t"'),
    ("other controls in lowercase hex", "\x00\x1f\x0b", b'"\\u0000\\u001f\\u000b"'),
    ("DEL, slash, U+2028 and non-ASCII unescaped", "\x7f/\u2028é€", '"\x7f/\u2028é€"'.encode()),
    (
        "nested key order by UTF-16 code units",
        {"b": {"\ufb33": 1, "\U0001f600": 2, "a": 3}, "a": [{"z": 1, "y": 2}]},
        '{"a":[{"y":2,"z":1}],"b":{"a":3,"\U0001f600":2,"\ufb33":1}}'.encode(),
    ),
    ("upper case before lower case", {"b": 1, "B": 2, "a": 3, "A": 4}, b'{"A":4,"B":2,"a":3,"b":1}'),
    ("empty containers", {"x": [], "y": {}}, b'{"x":[],"y":{}}'),
]


@pytest.mark.parametrize(("case", "value", "expected"), CROSS_CHECKED, ids=[c[0] for c in CROSS_CHECKED])
def test_cross_checked_bytes(case: str, value: Any, expected: bytes) -> None:
    assert both(value) == expected


@pytest.mark.parametrize(
    "value",
    [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**63, 10**30, {"x": [2**53]}, "\ud800", {"\udc00": 1}],
    ids=["2**53", "-2**53", "2**63", "10**30", "nested 2**53", "lone surrogate", "lone surrogate key"],
)
def test_values_without_an_rfc_8785_form_are_refused_by_both(value: Any) -> None:
    with pytest.raises(ValueError):
        jcs(value)
    with pytest.raises(ValueError):
        ledger_canonical_json(value)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(value=_JSON)
def test_gateway_and_reference_ledger_agree(value: Any) -> None:
    # ...and the output is JSON that reads back to the same value in a reader whose numbers are
    # doubles, as RFC 8785 assumes (1e16 is written 10000000000000000, 1.0 as 1).
    assert json.loads(both(value), parse_int=float) == value


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(0, 2**64 - 1))
def test_every_double_is_written_alike(bits: int) -> None:
    x = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    if math.isfinite(x):
        out = both(x)
        assert float(out) == x  # shortest form, and exact


_FLAT = st.dictionaries(
    st.text(max_size=6),
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(max_size=8),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(event=_FLAT)
def test_face_terminal_and_gateway_agree_on_flat_events(event: dict[str, Any]) -> None:
    assert terminal_canonical(event) == face_canonical_bytes(event | {"signature": "x"}) == jcs(event)


def test_signing_bytes_is_the_same_form() -> None:
    doc = {"z": 1.0, "a": [1e-7], "signature": "s"}
    assert signing_bytes(doc) == ledger_canonical_json({"z": 1.0, "a": [1e-7]}) == b'{"a":[1e-7],"z":1}'

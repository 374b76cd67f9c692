"""RFC 8785 (JSON Canonicalization Scheme), written independently of the `rfc8785` package that the
gateway uses: the reference ledger signs with this one and the gateway verifies with the other,
so any drift between the two fails a test instead of hiding."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader (IEEE 754 doubles) holds exactly."""


def canonical_json(doc: Any) -> bytes:
    """The signed form: RFC 8785 (JSON Canonicalization Scheme), UTF-8.

    Written here again on purpose: this is the *central* side of the contract, and the tests
    verify its signatures with the gateway's own drivers.ledger.permit_codec (which uses the
    rfc8785 package), so a drift between the two canonical forms fails a test instead of
    hiding. Raises ValueError for what has no RFC 8785 form (NaN, Infinity, an integer beyond
    +-(2**53 - 1), a lone surrogate) and TypeError for what is not JSON.
    """
    out: list[str] = []
    _jcs(doc, out)
    return "".join(out).encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError


def _jcs(v: Any, out: list[str]) -> None:
    if v is None or isinstance(v, bool):
        out.append({None: "null", True: "true", False: "false"}[v])
    elif isinstance(v, int):
        if abs(v) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {v} is beyond +-(2**53 - 1): not exact in every JSON reader")
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(_jcs_number(v))
    elif isinstance(v, str):
        out.append(_jcs_string(v))
    elif isinstance(v, list | tuple):
        out.append("[")
        for i, item in enumerate(v):
            out.append("," if i else "")
            _jcs(item, out)
        out.append("]")
    elif isinstance(v, Mapping):
        if not all(isinstance(k, str) for k in v):
            raise TypeError("object keys must be strings")
        out.append("{")
        for i, k in enumerate(sorted(v, key=_utf16_units)):
            out.append(("," if i else "") + _jcs_string(k) + ":")
            _jcs(v[k], out)
        out.append("}")
    else:
        raise TypeError(f"{type(v).__name__} is not JSON")


def _utf16_units(key: str) -> list[int]:
    """RFC 8785 3.2.3: members are sorted by the UTF-16 code units of their names."""
    units: list[int] = []
    for ch in key:
        cp = ord(ch)
        if cp > 0xFFFF:  # a surrogate pair: sorts below U+E000..U+FFFF, unlike code points
            cp -= 0x10000
            units += (0xD800 | cp >> 10, 0xDC00 | cp & 0x3FF)
        else:
            units.append(cp)
    return units


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _jcs_string(s: str) -> str:
    """RFC 8785 3.2.2.2: only '"', '\\' and controls are escaped; controls without a short
    escape as \\u00xx (lowercase hex); everything else as itself."""
    return '"' + "".join(
        _SHORT_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ch < " " else ch) for ch in s
    ) + '"'


def _jcs_number(x: float) -> str:
    """RFC 8785 3.2.2.3: ECMAScript's Number.prototype.toString (ECMA-262 Number::toString).

    Python's repr already picks the shortest digits that read back as the same double, as
    ECMAScript does; only the layout differs (1e-07 -> 1e-7, 1e+16 -> 10000000000000000).
    """
    if not math.isfinite(x):
        raise ValueError(f"{x} has no JSON form")
    if x == 0:
        return "0"  # -0 too
    _, digit_tuple, exp = Decimal(repr(abs(x))).normalize().as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), exp + len(digits)  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = f"{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
        text = digits + "e" + e if k == 1 else digits[0] + "." + digits[1:] + "e" + e
    return ("-" if x < 0 else "") + text

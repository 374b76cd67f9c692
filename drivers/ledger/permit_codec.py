"""Signed permits from the central ledger: canonical JSON, Ed25519, parsing into `rules.permit`.

Wire format: one JSON object (UTF-8) with the permit fields, "canon" and a "signature" field:

    {"permit_id": "HW-1", "revision": 3, "canon": "jcs", "type": "hot_work", "grade": "first",
     "site_id": "s1", "zone_id": "z1", "state": "approved",
     "valid_from": 1714550400, "valid_to": "2024-05-01T16:00:00Z",
     "people": [{"id": "p1", "role": "operator"}, ...],
     "gas_tests": [{"at": ..., "tester": "p4", "o2": 20.9, "lel": 0, "h2s": 0, "co": 0,
                    "instrument": "GX-1", "bump_at": ..., "cal_due": ...}],
     "isolations": [{"tag": "LOTO-7", "point": "valve 3"}],
     "approvals": [{"signer": "p3", "role": "issuer", "at": ..., "signature": "..."}],
     "linked_permits": ["CS-2"], "history": [{"from": "draft", "to": "submitted", "at": ..., "reason": ""}],
     "max_entrants": 2,
     "competencies": [{"person": "p1", "certificate_id": "C-9", "kind": "hot_work", "expires": ...}],
     "signature": "<base64 Ed25519 signature of signing_bytes(body)>"}

Times are epoch seconds UTC (a JSON number) or ISO 8601 strings with an explicit offset.
Optional lists default to empty; unknown fields are ignored (they are still covered by
the signature).

Signed form (`signing_bytes`): the RFC 8785 JSON Canonicalization Scheme (JCS) of the
document without its "signature" member, as UTF-8. `"canon": "jcs"` says so and is signed
with the rest. JCS is language-neutral: members sorted by the UTF-16 code units of their
names, no whitespace, strings escaped only where JSON must, numbers as ECMAScript writes
them (1700000000.0 -> 1700000000, 1e-07 -> 1e-7, -0.0 -> 0). Integers must lie within
+-(2**53 - 1) (I-JSON), so that every JSON implementation reads them exactly.

A document without "canon" was signed in the pre-RFC 8785 form (Python's sorted-key
`json.dumps`, floats as Python's repr): refused as `old_canon`, whatever its signature,
so a ledger that has not been upgraded is told so instead of failing as a forgery. Any
other "canon" is refused as `unknown_canon`.

`canonical_json` is the gateway's own sorted-key form. It is not what a ledger signs: it
stays as it was for the audit chain's hashes (gateway/ledger/audit.py) and the content
identity of accepted permits, so existing chains and state keep verifying.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drivers.ledger.errors import PermitFormatError
from rules.config import ZoneKind
from rules.permit import (
    DEFAULT_CFG,
    TERMINAL,
    Approval,
    Competency,
    GasTest,
    Isolation,
    Permit,
    PermitCfg,
    PermitState,
    PermitType,
    Person,
    Problem,
    ProblemCode,
    Role,
    StateChange,
    validate,
)

_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")

MAX_PERMIT_BYTES = 64 * 1024
"""A permit is a few kB; anything much bigger is refused before parsing."""

CANON = "jcs"
"""The value of a permit's "canon" member: signed over its RFC 8785 canonical JSON."""
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a signed document may hold (RFC 8785 / I-JSON: exact in every JSON reader)."""
OLD_CANON_DETAIL = (
    "signed in the pre-RFC 8785 form (no canon field): the ledger must add canon = 'jcs' and sign "
    "the RFC 8785 canonical JSON (docs/ledger-api.yaml)"
)


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    WRONG_SITE = "wrong_site"
    WRONG_ZONE = "wrong_zone"
    INVALID = "invalid"
    """Signed and well-formed, but `rules.permit.validate` found problems (see `problems`)."""
    OVERSIZE = "oversize"
    OLD_CANON = "old_canon"
    """No "canon" member: signed in the pre-RFC 8785 form, which is no longer accepted."""
    UNKNOWN_CANON = "unknown_canon"
    """A "canon" other than "jcs": a signed form this gateway does not know."""


@dataclass(frozen=True, slots=True)
class PermitRejection:
    """Why a permit document was refused. Never acted on; counted, shown and recorded."""

    reason: RejectReason
    detail: str
    """Human-readable: names the field or check that failed."""
    permit_id: str = ""
    """Empty when the document was too broken to tell."""
    problems: tuple[Problem, ...] = ()
    """The validation problems when `reason` is INVALID."""


# --- canonical JSON and signatures ---------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a permit")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            # Two parsers could disagree on which one counts: refuse instead of guessing.
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _finite_float(text: str) -> float:
    f = float(text)
    if not math.isfinite(f):  # 1e400 parses as inf, which has no canonical JSON form
        raise ValueError(f"number {text[:20]} is out of range")
    return f


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN/Infinity. Raises ValueError/TypeError otherwise.

    The gateway's own form for its audit chain and content hashes, unchanged so that existing
    chains verify. Not the signed form of a permit: that is `signing_bytes` (RFC 8785).
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def loads_strict(data: bytes | str) -> Any:
    """json.loads that refuses NaN/Infinity, out-of-range floats and duplicate keys (raises ValueError)."""
    return json.loads(
        data, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_no_duplicate_keys
    )


def jcs(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON of `obj`, UTF-8.

    Raises ValueError when `obj` has no such form: NaN or Infinity, an integer beyond
    +-(2**53 - 1), a lone surrogate, a non-string key or a value that is not JSON.
    """
    return rfc8785.dumps(obj)  # its CanonicalizationError is a ValueError


def signing_bytes(body: Mapping[str, Any]) -> bytes:
    """The bytes the ledger signs: the RFC 8785 canonical JSON of `body` without its "signature".

    Raises ValueError when the body has no RFC 8785 form (see `jcs`).
    """
    return jcs({k: v for k, v in body.items() if k != "signature"})


def sign_permit(body: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of `body` with canon = "jcs" and "signature" set (any old signature is replaced).

    For the reference ledger and tests. Raises ValueError when the body has no RFC 8785 form.
    """
    unsigned = {k: v for k, v in body.items() if k != "signature"} | {"canon": CANON}
    sig = private_key.sign(signing_bytes(unsigned))
    return {**unsigned, "signature": base64.b64encode(sig).decode("ascii")}


# --- verification --------------------------------------------------------------------


def verify_permit(
    doc: bytes | str | Mapping[str, Any],
    ledger_public_key: Ed25519PublicKey,
    site: str,
    zone_ids: Mapping[str, ZoneKind],
    now_utc: float,
    cfg: PermitCfg = DEFAULT_CFG,
    max_bytes: int = MAX_PERMIT_BYTES,
) -> Permit | PermitRejection:
    """The permit if `doc` is signed by the ledger, for this site and one of `zone_ids`,
    not expired and valid; otherwise a `PermitRejection`. Never raises on bad input.

    `zone_ids` maps this gateway's zone ids to their kinds (validation needs the kind).
    A signed CLOSED/CANCELLED/EXPIRED permit for our site and zone is returned even if
    expired or incomplete: it can only withdraw permission, and the gateway must hear it.
    """
    body = _load(doc, max_bytes)
    if isinstance(body, PermitRejection):
        return body
    pid = body.get("permit_id")
    pid = pid if isinstance(pid, str) else ""

    sig_field = body.get("signature")
    if sig_field is None or sig_field == "":
        return PermitRejection(RejectReason.UNSIGNED, "no signature field", pid)
    if not isinstance(sig_field, str):
        return PermitRejection(RejectReason.MALFORMED, "signature: expected a base64 string", pid)
    canon = body.get("canon")
    if canon is None:
        return PermitRejection(RejectReason.OLD_CANON, OLD_CANON_DETAIL, pid)
    if canon != CANON:
        return PermitRejection(
            RejectReason.UNKNOWN_CANON,
            f"canon {repr(canon)[:40]} is not a signed form this gateway verifies: only canon = 'jcs', "
            "the RFC 8785 canonical JSON (docs/ledger-api.yaml)",
            pid,
        )
    try:
        sig = base64.b64decode(sig_field, validate=True)
    except (binascii.Error, ValueError):
        return PermitRejection(RejectReason.BAD_SIGNATURE, "signature: not valid base64", pid)
    try:
        signed = signing_bytes(body)
    except (ValueError, RecursionError) as exc:
        return PermitRejection(RejectReason.MALFORMED, f"no RFC 8785 canonical form: {str(exc)[:80]}", pid)
    try:
        ledger_public_key.verify(sig, signed)
    except InvalidSignature:
        return PermitRejection(RejectReason.BAD_SIGNATURE, "signature does not match the ledger key", pid)

    try:
        permit = permit_from_body(body)
    except PermitFormatError as exc:
        return PermitRejection(RejectReason.MALFORMED, str(exc), pid)

    if permit.site_id != site:
        return PermitRejection(RejectReason.WRONG_SITE, f"site_id {permit.site_id!r}, this site is {site!r}", pid)
    zone_kind = zone_ids.get(permit.zone_id)
    if zone_kind is None:
        return PermitRejection(RejectReason.WRONG_ZONE, f"zone_id {permit.zone_id!r} is not served here", pid)
    if permit.state in TERMINAL:
        return permit
    if not now_utc < permit.valid_to:
        return PermitRejection(RejectReason.EXPIRED, f"valid_to {permit.valid_to} has passed (now {now_utc})", pid)
    problems = tuple(p for p in validate(permit, site, zone_kind, now_utc, cfg) if p.code is not ProblemCode.WRONG_SITE)
    if problems:
        return PermitRejection(RejectReason.INVALID, "; ".join(p.detail for p in problems), pid, problems)
    return permit


def _load(doc: bytes | str | Mapping[str, Any], max_bytes: int) -> dict[str, Any] | PermitRejection:
    """The document as a plain JSON object, normalized (dicts go through canonical JSON too)."""
    try:
        if isinstance(doc, bytes | bytearray | str):
            size = len(doc.encode("utf-8")) if isinstance(doc, str) else len(doc)
            if size > max_bytes:
                return PermitRejection(RejectReason.OVERSIZE, f"{size} bytes > {max_bytes}")
            data = bytes(doc).decode("utf-8") if not isinstance(doc, str) else doc
            body = loads_strict(data)
            canonical_json(body)  # e.g. a "\ud800" escape parses but has no UTF-8 form: refuse here
        else:
            raw = canonical_json(dict(doc) if isinstance(doc, Mapping) else doc)
            if len(raw) > max_bytes:
                return PermitRejection(RejectReason.OVERSIZE, f"{len(raw)} bytes > {max_bytes}")
            body = loads_strict(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; TypeError: non-JSON values in a dict.
        return PermitRejection(RejectReason.MALFORMED, f"not a JSON permit: {exc}")
    if not isinstance(body, dict):
        return PermitRejection(RejectReason.MALFORMED, f"top level is {type(body).__name__}, expected an object")
    return body


# --- parsing into the pure model -----------------------------------------------------


def _get(d: Mapping[str, Any], key: str, where: str, required: bool = True) -> Any:
    if key not in d or d[key] is None:
        if required:
            raise PermitFormatError(f"{where}{key}", "missing")
        return None
    return d[key]


def _str(d: Mapping[str, Any], key: str, where: str = "", required: bool = True) -> str:
    v = _get(d, key, where, required)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise PermitFormatError(f"{where}{key}", f"expected a string, got {type(v).__name__}")
    return v


def _num(d: Mapping[str, Any], key: str, where: str = "", required: bool = True) -> float | None:
    v = _get(d, key, where, required)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PermitFormatError(f"{where}{key}", f"expected a number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError as exc:
        raise PermitFormatError(f"{where}{key}", "number out of range") from exc
    if not math.isfinite(f):
        raise PermitFormatError(f"{where}{key}", "not finite")
    return f


def _req_num(d: Mapping[str, Any], key: str, where: str = "") -> float:
    v = _num(d, key, where)
    if v is None:  # required=True raises first; never let a missing number through as None
        raise PermitFormatError(f"{where}{key}", "required")
    return v


def _time(d: Mapping[str, Any], key: str, where: str = "", required: bool = True) -> float | None:
    """Epoch seconds UTC from a number or an ISO 8601 string with an explicit offset."""
    v = _get(d, key, where, required)
    if v is None:
        return None
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError as exc:
            raise PermitFormatError(f"{where}{key}", f"not an ISO 8601 time: {v!r}") from exc
        if t.tzinfo is None:
            raise PermitFormatError(f"{where}{key}", f"{v!r} has no UTC offset: add 'Z' or '+00:00'")
        return t.timestamp()
    return _num(d, key, where, required)


def _req_time(d: Mapping[str, Any], key: str, where: str = "") -> float:
    v = _time(d, key, where)
    if v is None:
        raise PermitFormatError(f"{where}{key}", "required")
    return v


def _enum(cls: type[_E], d: Mapping[str, Any], key: str, where: str = "") -> _E:
    v = _str(d, key, where)
    try:
        return cls(v)
    except ValueError as exc:
        raise PermitFormatError(f"{where}{key}", f"{v!r} is not one of {[m.value for m in cls]}") from exc


def _items(d: Mapping[str, Any], key: str, parse: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    v = d.get(key)
    if v is None:
        return ()
    if not isinstance(v, list):
        raise PermitFormatError(key, f"expected a list, got {type(v).__name__}")
    return tuple(parse(item, f"{key}[{i}].") for i, item in enumerate(v))


def _obj(item: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise PermitFormatError(where.rstrip("."), f"expected an object, got {type(item).__name__}")
    return item


def _person(item: Any, w: str) -> Person:
    o = _obj(item, w)
    return Person(_str(o, "id", w), _enum(Role, o, "role", w))


def _gas_test(item: Any, w: str) -> GasTest:
    o = _obj(item, w)
    return GasTest(
        at_utc=_req_time(o, "at", w),
        tester=_str(o, "tester", w),
        o2_pct=_req_num(o, "o2", w),
        lel_pct=_req_num(o, "lel", w),
        h2s_ppm=_num(o, "h2s", w, required=False),
        co_ppm=_num(o, "co", w, required=False),
        instrument=_str(o, "instrument", w),
        bump_utc=_time(o, "bump_at", w, required=False),
        cal_due_utc=_time(o, "cal_due", w, required=False),
    )


def _isolation(item: Any, w: str) -> Isolation:
    if isinstance(item, str):
        return Isolation(item)
    o = _obj(item, w)
    return Isolation(_str(o, "tag", w), _str(o, "point", w, required=False))


def _approval(item: Any, w: str) -> Approval:
    o = _obj(item, w)
    return Approval(_str(o, "signer", w), _enum(Role, o, "role", w), _req_time(o, "at", w), _str(o, "signature", w))


def _change(item: Any, w: str) -> StateChange:
    o = _obj(item, w)
    return StateChange(
        _enum(PermitState, o, "from", w),
        _enum(PermitState, o, "to", w),
        _req_time(o, "at", w),
        _str(o, "reason", w, required=False),
    )


def _competency(item: Any, w: str) -> Competency:
    o = _obj(item, w)
    return Competency(
        _str(o, "person", w), _str(o, "certificate_id", w), _str(o, "kind", w), _req_time(o, "expires", w)
    )


def _linked(item: Any, w: str) -> str:
    if not isinstance(item, str):
        raise PermitFormatError(w.rstrip("."), "expected a permit id string")
    return item


def permit_from_body(body: Mapping[str, Any]) -> Permit:
    """Parse a (verified) permit body into the pure model. Raises `PermitFormatError` naming the field."""
    revision = body.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 1 <= revision <= MAX_SAFE_INTEGER:
        raise PermitFormatError(
            "revision", "required: an integer >= 1 that the ledger raises with every change of the permit"
        )
    max_entrants = body.get("max_entrants")
    if max_entrants is not None and (
        isinstance(max_entrants, bool) or not isinstance(max_entrants, int) or max_entrants < 0
    ):
        raise PermitFormatError("max_entrants", "expected a non-negative integer or null")
    return Permit(
        permit_id=_str(body, "permit_id"),
        type=_enum(PermitType, body, "type"),
        grade=_str(body, "grade", required=False),
        site_id=_str(body, "site_id"),
        zone_id=_str(body, "zone_id"),
        valid_from=_req_time(body, "valid_from"),
        valid_to=_req_time(body, "valid_to"),
        state=_enum(PermitState, body, "state"),
        people=_items(body, "people", _person),
        gas_tests=_items(body, "gas_tests", _gas_test),
        isolations=_items(body, "isolations", _isolation),
        approvals=_items(body, "approvals", _approval),
        linked_permits=_items(body, "linked_permits", _linked),
        history=_items(body, "history", _change),
        max_entrants=max_entrants,
        competencies=_items(body, "competencies", _competency),
        revision=revision,
    )


def permit_to_body(permit: Permit) -> dict[str, Any]:
    """The unsigned wire body of `permit` (times as epoch numbers). Inverse of `permit_from_body`."""
    return {
        "permit_id": permit.permit_id,
        "revision": permit.revision,
        "type": permit.type.value,
        "grade": permit.grade,
        "site_id": permit.site_id,
        "zone_id": permit.zone_id,
        "valid_from": permit.valid_from,
        "valid_to": permit.valid_to,
        "state": permit.state.value,
        "people": [{"id": p.id, "role": p.role.value} for p in permit.people],
        "gas_tests": [
            {
                "at": t.at_utc,
                "tester": t.tester,
                "o2": t.o2_pct,
                "lel": t.lel_pct,
                "h2s": t.h2s_ppm,
                "co": t.co_ppm,
                "instrument": t.instrument,
                "bump_at": t.bump_utc,
                "cal_due": t.cal_due_utc,
            }
            for t in permit.gas_tests
        ],
        "isolations": [{"tag": i.tag, "point": i.point} for i in permit.isolations],
        "approvals": [
            {"signer": a.signer, "role": a.role.value, "at": a.at_utc, "signature": a.signature}
            for a in permit.approvals
        ],
        "linked_permits": list(permit.linked_permits),
        "history": [
            {"from": c.from_state.value, "to": c.to_state.value, "at": c.at_utc, "reason": c.reason}
            for c in permit.history
        ],
        "max_entrants": permit.max_entrants,
        "competencies": [
            {"person": c.person, "certificate_id": c.certificate_id, "kind": c.kind, "expires": c.expires_utc}
            for c in permit.competencies
        ],
    }

"""drivers.ledger: canonical JSON, Ed25519 permit signatures, parsing, key loading."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ledger import (
    MAX_SAFE_INTEGER,
    LedgerKeyError,
    PermitFormatError,
    PermitRejection,
    RejectReason,
    canonical_json,
    jcs,
    load_ledger_public_key,
    permit_from_body,
    permit_to_body,
    sign_permit,
    signing_bytes,
    verify_permit,
)
from rules.config import ZoneKind
from rules.permit import Permit, PermitState, PermitType, Person, ProblemCode, Role

T0 = 1_714_550_400  # 2024-05-01T08:00:00Z
H = 3600
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PUB = KEY.public_key()
ZONES = {"z1": ZoneKind.HOT_WORK, "tank": ZoneKind.CONFINED_SPACE}
NOW = T0 + 60


def body(**kw: Any) -> dict[str, Any]:
    """A complete hot-work permit as the ledger sends it (mixing number and ISO times)."""
    b: dict[str, Any] = {
        "permit_id": "HW-7",
        "revision": 3,
        "type": "hot_work",
        "grade": "first",
        "site_id": "site-a",
        "zone_id": "z1",
        "state": "approved",
        "valid_from": T0,
        "valid_to": "2024-05-01T16:00:00Z",
        "people": [
            {"id": "op1", "role": "operator"},
            {"id": "fw1", "role": "fire_watch"},
            {"id": "is1", "role": "issuer"},
        ],
        "gas_tests": [
            {"at": T0, "tester": "t1", "o2": 20.9, "lel": 0, "h2s": 0, "co": 1.5, "instrument": "GX-1",
             "bump_at": T0 - H, "cal_due": "2024-06-01T00:00:00+00:00"},
        ],
        "isolations": [{"tag": "LOTO-3", "point": "valve 3"}, "LOTO-4"],
        "approvals": [{"signer": "is1", "role": "issuer", "at": T0 - 600, "signature": "c2ln"}],
        "linked_permits": ["CS-2"],
        "history": [{"from": "submitted", "to": "approved", "at": T0 - 600, "reason": "ok"}],
        "max_entrants": None,
        "competencies": [{"person": "op1", "certificate_id": "C-1", "kind": "hot_work", "expires": T0 + 90 * 24 * H}],
        "note": "unknown fields are ignored but signed: 焊接",
    }
    b.update(kw)
    return b


def signed(**kw: Any) -> dict[str, Any]:
    return sign_permit(body(**kw), KEY)


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def verify(doc: Any, now: float = NOW) -> Permit | PermitRejection:
    return verify_permit(doc, PUB, "site-a", ZONES, now)


def reason(r: Permit | PermitRejection) -> RejectReason | None:
    return r.reason if isinstance(r, PermitRejection) else None


# --- canonical form --------------------------------------------------------------------


def test_canonical_json_form() -> None:
    # The gateway's own form (audit chain, content hashes): unchanged, floats as Python's repr.
    assert canonical_json({"b": 1, "a": [1.5, "é"], "c": None}) == '{"a":[1.5,"é"],"b":1,"c":null}'.encode()
    assert canonical_json({"t": 1700000000.0, "x": 1e-07}) == b'{"t":1700000000.0,"x":1e-07}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({"x": float("inf")})


def test_signing_bytes_are_rfc_8785_without_the_signature() -> None:
    assert signing_bytes({"b": 1, "signature": "zz"}) == b'{"b":1}'
    doc = {"valid_from": 1700000000.0, "o2": 20.9, "lel": 1e-7, "h2s": -0.0, "big": 1e21, "n": MAX_SAFE_INTEGER,
           "é": "\U0001F600\u20ac\n", "\ufb33": 1, "\U0001F600": 2, "canon": "jcs", "signature": "x"}
    assert signing_bytes(doc) == (
        '{"big":1e+21,"canon":"jcs","h2s":0,"lel":1e-7,"n":9007199254740991,"o2":20.9,"valid_from":1700000000,'
        '"é":"\U0001F600€\\n","\U0001F600":2,"\ufb33":1}'
    ).encode()
    for bad in (float("nan"), float("inf"), MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, "\ud800"):
        with pytest.raises(ValueError):
            signing_bytes({"x": bad})


def test_sign_permit_replaces_signature_sets_canon_and_keeps_input() -> None:
    b = body(signature="old")
    s = sign_permit(b, KEY)
    assert b["signature"] == "old" and "canon" not in b
    assert s["canon"] == "jcs" and len(base64.b64decode(s["signature"])) == 64
    unsigned = {k: v for k, v in b.items() if k != "signature"} | {"canon": "jcs"}
    PUB.verify(base64.b64decode(s["signature"]), jcs(unsigned))
    assert sign_permit(body(canon="c14n"), KEY)["canon"] == "jcs"  # it signs one form and says which
    with pytest.raises(ValueError):
        sign_permit(body(valid_from=2**53), KEY)  # no RFC 8785 form: nothing to sign


# --- good ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dict", "bytes", "str", "pretty"])
def test_good_signature(form: str) -> None:
    doc = signed()
    inp: Any = {
        "dict": doc,
        "bytes": raw(doc),
        "str": raw(doc).decode(),
        "pretty": json.dumps(doc, indent=2).encode(),  # whitespace and escaping do not matter
    }[form]
    p = verify(inp)
    assert isinstance(p, Permit)
    assert (p.permit_id, p.type, p.state, p.site_id, p.zone_id) == (
        "HW-7", PermitType.HOT_WORK, PermitState.APPROVED, "site-a", "z1",
    )  # fmt: skip
    assert (p.valid_from, p.valid_to) == (T0, T0 + 8 * H)
    assert p.people[0] == Person("op1", Role.OPERATOR)
    assert p.gas_tests[0].cal_due_utc == 1_717_200_000.0 and p.gas_tests[0].co_ppm == 1.5
    assert [i.tag for i in p.isolations] == ["LOTO-3", "LOTO-4"]
    assert p.linked_permits == ("CS-2",) and p.history[0].to_state is PermitState.APPROVED


def test_body_round_trip() -> None:
    p = permit_from_body(body())
    assert permit_from_body(permit_to_body(p)) == p
    assert isinstance(verify(sign_permit(permit_to_body(p), KEY)), Permit)


# --- rejections ----------------------------------------------------------------------


def _flip_body_byte(doc: dict[str, Any]) -> bytes:
    b = raw(doc)
    i = b.index(b'"op1"') + 3
    return b[:i] + b"2" + b[i + 1 :]  # op1 -> op2 in the first person


def _other_key(doc: dict[str, Any]) -> dict[str, Any]:
    return sign_permit(doc, OTHER)


def _no_sig(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "signature"}


def old_form(doc: dict[str, Any], key: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    """Signed as a ledger did before RFC 8785: no canon, Python's sorted-key json.dumps."""
    unsigned = {k: v for k, v in doc.items() if k not in ("signature", "canon")}
    sig = key.sign(canonical_json(unsigned))
    return unsigned | {"signature": base64.b64encode(sig).decode()}


def _fake_sig(doc: dict[str, Any]) -> dict[str, Any]:
    """Canon jcs and a well-formed signature, for bodies that cannot be signed at all."""
    return doc | {"canon": "jcs", "signature": base64.b64encode(bytes(64)).decode()}


def _legacy_bytes_with_canon(doc: dict[str, Any]) -> dict[str, Any]:
    """Says canon jcs but signed the old bytes: differs where the forms differ (floats here)."""
    unsigned = {k: v for k, v in doc.items() if k != "signature"} | {"canon": "jcs"}
    return unsigned | {"signature": base64.b64encode(KEY.sign(canonical_json(unsigned))).decode()}


REJECTIONS: list[tuple[str, Any, RejectReason]] = [
    ("one body byte changed", _flip_body_byte(signed()), RejectReason.BAD_SIGNATURE),
    ("signed by another key", _other_key(body()), RejectReason.BAD_SIGNATURE),
    ("signature truncated", {**signed(), "signature": signed()["signature"][:40]}, RejectReason.BAD_SIGNATURE),
    ("signature not base64", {**signed(), "signature": "@@@@"}, RejectReason.BAD_SIGNATURE),
    ("signature of another permit", {**signed(permit_id="HW-8"), "permit_id": "HW-7"}, RejectReason.BAD_SIGNATURE),
    ("unsigned", _no_sig(signed()), RejectReason.UNSIGNED),
    ("empty signature", {**signed(), "signature": ""}, RejectReason.UNSIGNED),
    ("null signature", {**signed(), "signature": None}, RejectReason.UNSIGNED),
    ("signature not a string", {**signed(), "signature": 5}, RejectReason.MALFORMED),
    ("expired", signed(valid_to=NOW), RejectReason.EXPIRED),
    ("wrong site", signed(site_id="site-b"), RejectReason.WRONG_SITE),
    ("wrong zone", signed(zone_id="z9"), RejectReason.WRONG_ZONE),
    ("issuer is operator", signed(people=[*body()["people"], {"id": "is1", "role": "operator"}]),
     RejectReason.INVALID),
    ("not JSON", b'{"permit_id": ', RejectReason.MALFORMED),
    ("not UTF-8", b'{"a": "\xff"}', RejectReason.MALFORMED),
    ("a list", b"[1, 2]", RejectReason.MALFORMED),
    ("deep nesting", b"[" * 30_000 + b"]" * 30_000, RejectReason.MALFORMED),
    ("float out of range", b'{"valid_from": 1e400, "signature": "AAAA"}', RejectReason.MALFORMED),
    ("lone surrogate escape", b'{"x": "\\ud800", "signature": "AAAA"}', RejectReason.MALFORMED),
    ("NaN literal", b'{"valid_from": NaN, "signature": "x"}', RejectReason.MALFORMED),
    ("duplicate key", b'{"site_id": "site-a", "site_id": "site-b", "signature": "x"}', RejectReason.MALFORMED),
    ("dict with a non-JSON value", {"x": object()}, RejectReason.MALFORMED),
    ("signed, field missing", sign_permit({k: v for k, v in body().items() if k != "valid_to"}, KEY),
     RejectReason.MALFORMED),
    ("signed, time of wrong type", signed(valid_from=True), RejectReason.MALFORMED),
    ("signed, naive ISO time", signed(valid_to="2024-05-01T16:00:00"), RejectReason.MALFORMED),
    ("signed, unknown role", signed(people=[{"id": "x", "role": "boss"}]), RejectReason.MALFORMED),
    ("signed, people not a list", signed(people={"id": "x"}), RejectReason.MALFORMED),
    ("signed, max_entrants negative", signed(max_entrants=-1), RejectReason.MALFORMED),
    ("huge number", _fake_sig(body(valid_from=10**400)), RejectReason.MALFORMED),
    ("integer beyond 2**53 - 1", _fake_sig(body(note=2**53)), RejectReason.MALFORMED),
    ("revision beyond 2**53 - 1", _fake_sig(body(revision=2**53)), RejectReason.MALFORMED),
    ("pre-RFC 8785 form", old_form(body()), RejectReason.OLD_CANON),
    ("pre-RFC 8785 form, bytes", raw(old_form(body())), RejectReason.OLD_CANON),
    ("canon null", sign_permit(body(), KEY) | {"canon": None}, RejectReason.OLD_CANON),
    ("canon removed after signing", {k: v for k, v in signed().items() if k != "canon"}, RejectReason.OLD_CANON),
    ("canon of another form", {**signed(), "canon": "c14n"}, RejectReason.UNKNOWN_CANON),
    ("canon not a string", {**signed(), "canon": 1}, RejectReason.UNKNOWN_CANON),
    ("canon jcs over the old bytes", _legacy_bytes_with_canon(body(valid_from=float(T0))), RejectReason.BAD_SIGNATURE),
    ("oversize bytes", b" " * 70_000 + raw(signed()), RejectReason.OVERSIZE),
    ("oversize dict", signed(note="x" * 70_000), RejectReason.OVERSIZE),
]  # fmt: skip


@pytest.mark.parametrize(("case", "doc", "want"), REJECTIONS, ids=[c[0] for c in REJECTIONS])
def test_rejections(case: str, doc: Any, want: RejectReason) -> None:
    got = verify(doc)
    assert isinstance(got, PermitRejection), case
    assert got.reason is want, got.detail
    assert got.detail


def test_old_form_is_refused_with_what_the_ledger_must_change() -> None:
    got = verify(old_form(body()))
    assert isinstance(got, PermitRejection) and got.permit_id == "HW-7"
    assert got.detail == (
        "signed in the pre-RFC 8785 form (no canon field): the ledger must add canon = 'jcs' and sign "
        "the RFC 8785 canonical JSON (docs/ledger-api.yaml)"
    )
    other = verify({**signed(), "canon": "c14n"})
    assert isinstance(other, PermitRejection) and "'c14n'" in other.detail and "canon = 'jcs'" in other.detail


def test_a_ledger_in_another_language_verifies_with_its_own_number_forms() -> None:
    # The bytes a JavaScript ledger writes (JSON.stringify of the same numbers) and signs.
    unsigned = body(valid_from=1714550400.0, gas_tests=[{"at": 1714550400.5, "tester": "t1", "o2": 20.9,
                    "lel": 1e-7, "h2s": 0, "co": -0.0, "instrument": "GX-1", "bump_at": 1.7145468e9,
                    "cal_due": 1e10}]) | {"canon": "jcs"}
    signed_bytes = signing_bytes(unsigned)
    assert b'"valid_from":1714550400,' in signed_bytes
    assert b'{"at":1714550400.5,"bump_at":1714546800,"cal_due":10000000000,"co":0,"h2s":0,"instrument":"GX-1",' \
           b'"lel":1e-7,"o2":20.9,"tester":"t1"}' in signed_bytes
    sig = base64.b64encode(KEY.sign(signed_bytes)).decode()
    wire = signed_bytes[:-1] + b',"signature":"' + sig.encode() + b'"}'  # as the ledger sends it
    p = verify(wire)
    assert isinstance(p, Permit) and p.gas_tests[0].lel_pct == 1e-7 and p.valid_from == T0


def test_invalid_carries_the_problems() -> None:
    cert = {"person": "is1", "certificate_id": "C-2", "kind": "hot_work", "expires": NOW + H}
    certs = [*body()["competencies"], cert]
    got = verify(signed(people=[*body()["people"], {"id": "is1", "role": "operator"}], competencies=certs))
    assert isinstance(got, PermitRejection) and got.permit_id == "HW-7"
    assert [p.code for p in got.problems] == [ProblemCode.ISSUER_IS_OPERATOR]
    assert "is1" in got.detail


def test_expiry_boundary() -> None:
    assert isinstance(verify(signed(), now=T0 + 8 * H - 1), Permit)
    assert reason(verify(signed(), now=T0 + 8 * H)) is RejectReason.EXPIRED


def test_signed_cancellation_is_always_heard() -> None:
    # Past valid_to and missing its fire watch: a cancellation can only take permission away.
    doc = signed(state="cancelled", people=[{"id": "op1", "role": "operator"}])
    p = verify(doc, now=T0 + 9 * H)
    assert isinstance(p, Permit) and p.state is PermitState.CANCELLED
    # ...but it must still be genuine and ours.
    assert reason(verify({**doc, "state": "cancelled", "zone_id": "z9"})) is RejectReason.BAD_SIGNATURE
    assert reason(verify(sign_permit({**doc, "site_id": "site-b"}, KEY))) is RejectReason.WRONG_SITE


def test_parse_error_names_the_field() -> None:
    with pytest.raises(PermitFormatError) as ei:
        permit_from_body(body(gas_tests=[{"at": T0}]))
    assert ei.value.field == "gas_tests[0].tester"


# --- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from([*body(), "canon", "signature"])
json_docs = st.dictionaries(keys | st.text(max_size=8), json_values, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_docs | json_values)
def test_random_json_never_raises_never_verifies(doc: Any) -> None:
    for form in (doc, json.dumps(doc).encode()):
        assert isinstance(verify(form), PermitRejection)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patch=st.dictionaries(keys, json_values, max_size=4))
def test_signed_garbage_fields_never_raise(patch: dict[str, Any]) -> None:
    # Genuinely signed, so the parser and the validator see every kind of wrong value.
    try:
        doc = sign_permit(body(**patch), KEY)
    except ValueError:  # no RFC 8785 form (an integer beyond 2**53 - 1): refused, whatever the signature
        assert reason(verify(_fake_sig(body(**patch)))) in (RejectReason.MALFORMED, RejectReason.OVERSIZE)
        return
    got = verify(doc)
    assert isinstance(got, Permit | PermitRejection)
    if isinstance(got, PermitRejection):
        assert got.reason is not RejectReason.BAD_SIGNATURE


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert isinstance(verify(data), PermitRejection)


GOOD = raw(signed())
SIG_AT = GOOD.index(b'"signature"')


@settings(max_examples=300, deadline=None)
@given(i=st.integers(0, len(GOOD) - 1), b=st.integers(0, 255))
def test_one_byte_changed_never_verifies_other_content(i: int, b: int) -> None:
    mutated = GOOD[:i] + bytes([b]) + GOOD[i + 1 :]
    got = verify(mutated)
    if isinstance(got, Permit):
        # Only a change that keeps the signed content (e.g. 20.9 -> 20.9 written differently,
        # an unused base64 bit of the signature) may still verify.
        assert signing_bytes(json.loads(mutated)) == signing_bytes(json.loads(GOOD))


def test_unmutated_document_verifies() -> None:  # so that the mutation property is not vacuous
    assert isinstance(verify(GOOD), Permit) and SIG_AT > 0


# --- key loading ---------------------------------------------------------------------


def test_load_public_key_pem_and_raw(tmp_path: Path) -> None:
    pem = tmp_path / "ledger.pub.pem"
    pem.write_bytes(
        PUB.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rawf = tmp_path / "ledger.pub"
    rawf.write_bytes(PUB.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    for f in (pem, rawf):
        assert isinstance(verify_permit(signed(), load_ledger_public_key(f), "site-a", ZONES, NOW), Permit)


def _private_pem() -> bytes:
    return KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ec_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("case", "content", "words"),
    [
        ("missing", None, "not found"),
        ("private key", _private_pem(), "PRIVATE"),
        ("EC key", _ec_pem(), "not an Ed25519"),
        ("garbled PEM", b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "PEM"),
        ("31 bytes", b"x" * 31, "31 bytes"),
    ],
)
def test_load_public_key_errors(tmp_path: Path, case: str, content: bytes | None, words: str) -> None:
    f = tmp_path / "key"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(LedgerKeyError) as ei:
        load_ledger_public_key(f)
    msg = str(ei.value)
    assert str(f) in msg and words in msg and "fix:" in msg

"""The pure face-event verifier: tables of payloads in, verdicts and replay state out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.face.codec import (
    FaceVerifier,
    Rejection,
    RejectReason,
    TerminalCfg,
    VerifierCfg,
    decode_last_seq,
    encode_last_seq,
)
from rules.events import FaceMatch, Rejected

NOW = datetime(2024, 5, 2, 8, 0, 0, tzinfo=UTC)
MONO = 5000.0
SECRET = bytes(range(32))
ED_PRIV = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
ED_PUB = ED_PRIV.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

CFG = VerifierCfg(
    terminals={
        "ft-h": TerminalCfg("ft-h", "zone-a", "hmac-sha256", SECRET),
        "ft-e": TerminalCfg("ft-e", "zone-b", "ed25519", ED_PUB),
    }
)


# Independent of the codec: what the documented wire format says a terminal does (RFC 8785
# for a flat body: members sorted by UTF-16 code units; strings, integers, booleans and null
# as json.dumps writes them).
def canonical(body: dict[str, Any]) -> bytes:
    members = sorted(body.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    return (
        "{"
        + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{json.dumps(v, ensure_ascii=False)}" for k, v in members)
        + "}"
    ).encode()


def old_canonical(body: dict[str, Any]) -> bytes:
    """The pre-RFC 8785 form: Python's sorted-key json.dumps (code point order)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed(
    body: dict[str, Any], alg: str = "hmac-sha256", key: bytes = SECRET, form: Callable[..., bytes] = canonical
) -> bytes:
    if alg == "hmac-sha256":
        sig = hmac.new(key, form(body), hashlib.sha256).hexdigest()
    else:
        sig = base64.b64encode(Ed25519PrivateKey.from_private_bytes(key).sign(form(body))).decode()
    return json.dumps({**body, "signature": sig}).encode()


def body(terminal: str = "ft-h", seq: int = 10, at: datetime = NOW, **over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "terminal": terminal,
        "person": "E10442",
        "verify_mode": "face",
        "time": at.isoformat().replace("+00:00", "Z"),
        "seq": seq,
        "canon": "jcs",
    }
    b.update(over)
    return b


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in body().items() if k != field}


ED_SEED = bytes(range(100, 132))
OTHER_SECRET = bytes(range(1, 33))


def fresh(last: dict[str, int] | None = None) -> FaceVerifier:
    return FaceVerifier(CFG, last or {"ft-h": 9, "ft-e": 9})


def test_good_hmac_event_is_a_face_match_and_advances_seq() -> None:
    v, verdict = fresh().verify(signed(body(score="0.97")), NOW + timedelta(seconds=2), MONO)
    assert verdict == FaceMatch(
        terminal="ft-h",
        person="E10442",
        at=MONO,
        utc="2024-05-02T08:00:00.000Z",
        seq=10,
        zone=CFG.terminals["ft-h"].zone,
    )
    assert dict(v.last_seq) == {"ft-h": 10, "ft-e": 9}


def test_good_ed25519_event_is_a_face_match() -> None:
    raw = signed(body("ft-e", seq=11, person="P-7"), "ed25519", ED_SEED)
    v, verdict = fresh().verify(raw, NOW, MONO)
    assert verdict == FaceMatch(
        terminal="ft-e", person="P-7", at=MONO, utc="2024-05-02T08:00:00.000Z", seq=11, zone=CFG.terminals["ft-e"].zone
    )
    assert dict(v.last_seq) == {"ft-h": 9, "ft-e": 11}


def test_first_event_of_an_unseen_terminal_is_accepted_at_any_seq() -> None:
    v, verdict = FaceVerifier(CFG).verify(signed(body(seq=0)), NOW, MONO)
    assert isinstance(verdict, FaceMatch) and dict(v.last_seq) == {"ft-h": 0}


def test_old_canon_says_what_the_terminal_must_change() -> None:
    _, verdict = fresh().verify(signed(without("canon"), form=old_canonical), NOW, MONO)
    assert isinstance(verdict, Rejection) and verdict.terminal == "ft-h"
    assert verdict.detail == (
        "signed in the pre-RFC 8785 form (no canon field): the terminal must add canon = 'jcs' and sign "
        "the RFC 8785 canonical JSON (drivers/face/codec.py)"
    )


def test_members_are_signed_in_utf16_order_and_integers_up_to_2_53() -> None:
    # U+1F600 is a surrogate pair (D83D DE00) in UTF-16 and sorts before U+FB33; by code
    # point it would sort after. Only the RFC 8785 order verifies (the table above).
    b = body(seq=2**53 - 1, **{"\U0001f600": "a", "\ufb33": "b", "\u20ac": "c", "\r": "d"})
    assert canonical(b).index("\U0001f600".encode()) < canonical(b).index("\ufb33".encode())
    _, verdict = FaceVerifier(CFG).verify(signed(b), NOW, MONO)
    assert isinstance(verdict, FaceMatch) and verdict.seq == 2**53 - 1


def test_time_with_another_offset_is_normalised_to_utc() -> None:
    t = NOW.astimezone(timezone(timedelta(hours=8)))
    _, verdict = fresh().verify(signed(body(at=t, time=t.isoformat())), NOW, MONO)
    assert isinstance(verdict, FaceMatch) and verdict.utc == "2024-05-02T08:00:00.000Z"


def _sig_swap(raw: bytes, new: str) -> bytes:
    d = json.loads(raw)
    d["signature"] = new
    return json.dumps(d).encode()


def _hmac_upper() -> bytes:
    d = json.loads(signed(body()))
    return _sig_swap(signed(body()), d["signature"].upper())


def _ed_no_padding() -> bytes:
    d = json.loads(signed(body("ft-e"), "ed25519", ED_SEED))
    return _sig_swap(json.dumps(d).encode(), d["signature"].rstrip("="))


def _tampered() -> bytes:
    d = json.loads(signed(body()))
    d["person"] = "E99999"
    return json.dumps(d).encode()


# (name, payload, reason, state advanced?)
REJECTIONS: list[tuple[str, Callable[[], bytes], RejectReason, bool]] = [
    ("hmac_wrong_key", lambda: signed(body(), key=OTHER_SECRET), RejectReason.BAD_SIGNATURE, False),
    ("ed25519_wrong_key", lambda: signed(body("ft-e"), "ed25519", bytes(32)), RejectReason.BAD_SIGNATURE, False),
    ("ed25519_sig_on_hmac_terminal", lambda: signed(body(), "ed25519", ED_SEED), RejectReason.BAD_SIGNATURE, False),
    ("hmac_sig_on_ed25519_terminal", lambda: signed(body("ft-e")), RejectReason.BAD_SIGNATURE, False),
    ("tampered_after_signing", _tampered, RejectReason.BAD_SIGNATURE, False),
    ("hmac_uppercase_hex", _hmac_upper, RejectReason.BAD_SIGNATURE, False),
    ("ed25519_unpadded_base64", _ed_no_padding, RejectReason.BAD_SIGNATURE, False),
    ("signature_not_hex", lambda: _sig_swap(signed(body()), "zz" * 32), RejectReason.BAD_SIGNATURE, False),
    ("replayed_lower_seq", lambda: signed(body(seq=5)), RejectReason.REPLAYED_SEQUENCE, False),
    ("replayed_equal_seq", lambda: signed(body(seq=9)), RejectReason.REPLAYED_SEQUENCE, False),
    ("stale_past", lambda: signed(body(at=NOW - timedelta(seconds=31))), RejectReason.STALE_TIME, True),
    ("stale_future", lambda: signed(body(at=NOW + timedelta(seconds=31))), RejectReason.STALE_TIME, True),
    ("unknown_terminal", lambda: signed(body("ft-x")), RejectReason.UNKNOWN_TERMINAL, False),
    ("verify_mode_card", lambda: signed(body(verify_mode="card")), RejectReason.WRONG_VERIFY_MODE, True),
    ("verify_mode_fingerprint", lambda: signed(body(verify_mode="fingerprint")), RejectReason.WRONG_VERIFY_MODE, True),
    ("verify_mode_face_card", lambda: signed(body(verify_mode="face+card")), RejectReason.WRONG_VERIFY_MODE, True),
    ("verify_mode_unheard_of", lambda: signed(body(verify_mode="palm")), RejectReason.WRONG_VERIFY_MODE, True),
    ("malformed_json", lambda: b'{"terminal": "ft-h", ', RejectReason.MALFORMED, False),
    ("empty", lambda: b"", RejectReason.MALFORMED, False),
    ("not_utf8", lambda: b'{"terminal": "\xff"}', RejectReason.MALFORMED, False),
    ("json_array", lambda: b"[1, 2]", RejectReason.MALFORMED, False),
    ("json_string", lambda: b'"face"', RejectReason.MALFORMED, False),
    ("missing_signature", lambda: json.dumps(body()).encode(), RejectReason.MALFORMED, False),
    ("missing_person", lambda: signed(without("person")), RejectReason.MALFORMED, False),
    ("missing_seq", lambda: signed(without("seq")), RejectReason.MALFORMED, False),
    ("missing_time", lambda: signed(without("time")), RejectReason.MALFORMED, False),
    ("seq_as_string", lambda: signed(body(seq="10")), RejectReason.MALFORMED, False),  # type: ignore[arg-type]
    ("seq_as_bool", lambda: signed(body(seq=True)), RejectReason.MALFORMED, False),
    ("seq_negative", lambda: signed(body(seq=-1)), RejectReason.MALFORMED, False),
    ("seq_huge", lambda: signed(body(seq=2**64)), RejectReason.MALFORMED, False),
    ("float_anywhere", lambda: signed(body(score=0.97)), RejectReason.MALFORMED, False),
    ("person_as_int", lambda: signed(body(person=10442)), RejectReason.MALFORMED, False),
    ("person_empty", lambda: signed(body(person="")), RejectReason.MALFORMED, False),
    ("person_with_newline", lambda: signed(body(person="E1\nE2")), RejectReason.MALFORMED, False),
    ("nested_extra", lambda: signed(body(meta={"a": 1})), RejectReason.MALFORMED, False),
    ("time_naive", lambda: signed(body(time="2024-05-02T08:00:00")), RejectReason.MALFORMED, False),
    ("time_garbage", lambda: signed(body(time="yesterday")), RejectReason.MALFORMED, False),
    ("time_as_epoch_int", lambda: signed(body(time=1714636800)), RejectReason.MALFORMED, False),
    ("signature_as_int", lambda: json.dumps({**body(), "signature": 5}).encode(), RejectReason.MALFORMED, False),
    ("duplicate_key", lambda: signed(body())[:-1] + b', "seq": 99}', RejectReason.MALFORMED, False),
    ("nan", lambda: signed(body())[:-1] + b', "x": NaN}', RejectReason.MALFORMED, False),
    ("oversize", lambda: signed(body(photo="A" * 5000)), RejectReason.OVERSIZE, False),
    ("seq_beyond_2_53", lambda: signed(body(seq=2**53)), RejectReason.MALFORMED, False),
    ("extra_int_beyond_2_53", lambda: signed(body(n=-(2**53))), RejectReason.MALFORMED, False),
    ("old_canon", lambda: signed(without("canon"), form=old_canonical), RejectReason.OLD_CANON, False),
    (
        "old_canon_ed25519",
        lambda: signed({k: v for k, v in body("ft-e").items() if k != "canon"}, "ed25519", ED_SEED, form=old_canonical),
        RejectReason.OLD_CANON,
        False,
    ),
    ("canon_null", lambda: signed(body(canon=None)), RejectReason.OLD_CANON, False),
    ("canon_other", lambda: signed(body(canon="jcs2")), RejectReason.UNKNOWN_CANON, False),
    ("canon_int", lambda: signed(body(canon=1)), RejectReason.UNKNOWN_CANON, False),
    (
        "canon_jcs_but_old_bytes",
        lambda: signed(body(**{"\U0001f600": "a", "\ufb33": "b"}), form=old_canonical),
        RejectReason.BAD_SIGNATURE,
        False,
    ),
]


@pytest.mark.parametrize(("payload", "reason", "advances"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejections(payload: Callable[[], bytes], reason: RejectReason, advances: bool) -> None:
    before = fresh()
    after, verdict = before.verify(payload(), NOW, MONO)
    assert isinstance(verdict, Rejection), verdict
    assert verdict.reason is reason, verdict.detail
    assert verdict.detail
    expected_state = {"ft-h": 10, "ft-e": 9} if advances else {"ft-h": 9, "ft-e": 9}
    assert dict(after.last_seq) == expected_state


@pytest.mark.parametrize("skew", [-30.0, 30.0])
def test_skew_exactly_at_the_limit_is_accepted(skew: float) -> None:
    _, verdict = fresh().verify(signed(body(at=NOW + timedelta(seconds=skew))), NOW, MONO)
    assert isinstance(verdict, FaceMatch)


def test_configured_skew_and_modes_apply() -> None:
    cfg = VerifierCfg(terminals=CFG.terminals, max_skew_s=5.0, accepted_modes=frozenset({"face", "face+card"}))
    v = FaceVerifier(cfg)
    v, late = v.verify(signed(body(seq=1, at=NOW - timedelta(seconds=6))), NOW, MONO)
    v, both = v.verify(signed(body(seq=2, verify_mode="face+card")), NOW, MONO)
    assert isinstance(late, Rejection) and late.reason is RejectReason.STALE_TIME
    assert isinstance(both, FaceMatch) and both.seq == 2


def test_future_dated_event_cannot_be_replayed_once_its_time_comes() -> None:
    raw = signed(body(seq=10, at=NOW + timedelta(seconds=120)))
    v, first = fresh().verify(raw, NOW, MONO)
    _, later = v.verify(raw, NOW + timedelta(seconds=120), MONO + 120)
    assert isinstance(first, Rejection) and first.reason is RejectReason.STALE_TIME
    assert isinstance(later, Rejection) and later.reason is RejectReason.REPLAYED_SEQUENCE


def test_sequence_is_per_terminal_and_strictly_increasing() -> None:
    v = FaceVerifier(CFG)
    verdicts = []
    for raw in (
        signed(body(seq=3)),
        signed(body("ft-e", seq=1), "ed25519", ED_SEED),
        signed(body(seq=3)),
        signed(body(seq=4)),
        signed(body("ft-e", seq=1), "ed25519", ED_SEED),
    ):
        v, verdict = v.verify(raw, NOW, MONO)
        verdicts.append(verdict.seq if isinstance(verdict, FaceMatch) else verdict.reason)
    assert verdicts == [3, 1, RejectReason.REPLAYED_SEQUENCE, 4, RejectReason.REPLAYED_SEQUENCE]
    assert dict(v.last_seq) == {"ft-h": 4, "ft-e": 1}


def test_replay_state_survives_encode_restore() -> None:
    v, _ = FaceVerifier(CFG).verify(signed(body(seq=41)), NOW, MONO)
    restored = FaceVerifier(CFG).with_last_seq(decode_last_seq(encode_last_seq(v.last_seq)))
    _, verdict = restored.verify(signed(body(seq=41)), NOW, MONO)
    assert dict(restored.last_seq) == {"ft-h": 41}
    assert isinstance(verdict, Rejection) and verdict.reason is RejectReason.REPLAYED_SEQUENCE


@pytest.mark.parametrize("raw", [b"[]", b'{"a": "1"}', b'{"a": true}', b"\xff"])
def test_decode_last_seq_refuses_other_shapes(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_last_seq(raw)


def test_rejection_event_names_known_terminal_else_remote() -> None:
    _, bad_sig = fresh().verify(signed(body(), key=OTHER_SECRET), NOW, MONO)
    _, unknown = fresh().verify(signed(body("ft-x")), NOW, MONO)
    assert isinstance(bad_sig, Rejection) and isinstance(unknown, Rejection)
    assert bad_sig.to_event("http:10.0.0.9") == Rejected("face:ft-h", "bad_signature", "HMAC does not match")
    assert unknown.to_event("http:10.0.0.9") == Rejected(
        "face:http:10.0.0.9", "unknown_terminal", "terminal 'ft-x' is not allow-listed"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "ft-1", "zone": "z", "alg": "hmac-sha256", "key": b"short"}, "need >= 32"),
        ({"id": "ft-1", "zone": "z", "alg": "ed25519", "key": bytes(31)}, "32 bytes"),
        ({"id": "ft-1", "zone": "z", "alg": "rsa", "key": bytes(32)}, "alg must be"),
        ({"id": "", "zone": "z", "alg": "hmac-sha256", "key": bytes(32)}, "id must match"),
        ({"id": "ft-1", "zone": "", "alg": "hmac-sha256", "key": bytes(32)}, "zone"),
    ],
)
def test_terminal_cfg_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TerminalCfg(**kwargs)


def test_verifier_cfg_key_must_match_terminal_id() -> None:
    with pytest.raises(ValueError, match="key differs"):
        VerifierCfg(terminals={"ft-1": TerminalCfg("ft-2", "z", "hmac-sha256", SECRET)})


# ---------------------------------------------------------------- properties

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    JSON_SCALARS,
    st.sampled_from(["ft-h", "ft-e", "E1", "face", "card", "2024-05-02T08:00:00Z", "a" * 64]),
    st.integers(min_value=0, max_value=20),
)


def _rejected(raw: bytes) -> bool:
    _, verdict = fresh().verify(raw, NOW, MONO)
    return isinstance(verdict, Rejection)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_nor_pass(raw: bytes) -> None:
    assert _rejected(raw)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_random_json_never_raises_nor_passes(value: object) -> None:
    assert _rejected(json.dumps(value).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["terminal", "person", "verify_mode", "time", "seq", "signature", "x"]),
        FIELD_VALUES,
        max_size=7,
    )
)
def test_event_shaped_json_without_a_valid_signature_never_passes(fields: dict[str, object]) -> None:
    assert _rejected(json.dumps(fields).encode())


def _compact(raw: bytes) -> bytes:
    # Whitespace between tokens is not signed (it does not change the event), so the wire
    # bytes must carry none for "any change is refused" to hold.
    return json.dumps(json.loads(raw), separators=(",", ":")).encode()


GOOD = [_compact(signed(body(seq=10))), _compact(signed(body("ft-e", seq=10), "ed25519", ED_SEED))]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GOOD), st.data())
def test_any_single_byte_change_to_a_signed_event_is_refused(raw: bytes, data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    b = data.draw(st.integers(min_value=0, max_value=255).filter(lambda x: x != raw[i]))
    assert _rejected(raw[:i] + bytes([b]) + raw[i + 1 :])


def test_the_unmutated_events_of_the_mutation_test_do_pass() -> None:
    assert not any(_rejected(raw) for raw in GOOD)

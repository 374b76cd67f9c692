r"""Face-terminal events: wire format, authentication, replay and clock checks. Pure.

No clock reads, no I/O, no logging: the wall clock (`now_utc`) and the monotonic clock
(`now_mono`) come in with every call, and the replay state goes out with every result.

Wire format (one event per HTTP body or MQTT message, UTF-8 JSON object)::

    {"terminal": "ft-gate-2",              device serial, allow-listed in the config
     "person": "E10442",                   person id as enrolled on the terminal
     "verify_mode": "face",                "face" | "card" | "fingerprint" | "face+card" | ...
     "time": "2024-05-02T07:59:58.120Z",   when the terminal matched, ISO 8601 with offset
     "seq": 1873,                          per-terminal counter, strictly increasing, < 2**53
     "canon": "jcs",                       the signed form (below)
     "score": "0.973",                     optional extra fields: covered by the signature
     "signature": "9c0f...e1"}

The signature covers the *canonical bytes* of the body without its ``signature`` field:
its RFC 8785 canonical JSON (JCS), UTF-8, which ``"canon": "jcs"`` names and which is signed
with the rest. For the flat bodies allowed here that is: members sorted by the UTF-16 code
units of their names, no whitespace, strings escaped only where JSON must (``\"``, ``\\``,
``\b \f \n \r \t``, other controls as lowercase ``\u00xx``), integers in decimal.
With ``hmac-sha256`` it is the lowercase hex HMAC-SHA256 under the terminal's
shared secret (64 characters); with ``ed25519`` it is the standard base64 (padded) of the
64-byte Ed25519 signature, checked with the terminal's public key. The algorithm comes
from the gateway's configuration of the terminal, never from the message (no algorithm
confusion).

To keep the canonical form identical across languages, the body is a flat object whose
values are strings, integers within +-(2**53 - 1), booleans or null: floats are refused
(send a score as a string), as are duplicate keys, NaN/Infinity and nesting.

An event without ``canon`` was signed in the pre-RFC 8785 form (Python's sorted-key
``json.dumps``): refused as ``old_canon`` (the terminal must add ``"canon": "jcs"`` and sign
the RFC 8785 form); any other ``canon`` is refused as ``unknown_canon``.

Acceptance, in this order (the first failure is the reason):
``oversize`` (more than `max_bytes`), ``malformed`` (not UTF-8 JSON of the shape above),
``unknown_terminal`` (not allow-listed), ``old_canon`` / ``unknown_canon``,
``bad_signature``, ``replayed_sequence``
(seq not strictly above the last one seen from that terminal), ``stale_time``
(|now - time| beyond `max_skew_s`, past or future), ``wrong_verify_mode``.
An authentic, non-replayed event advances the terminal's sequence even when it is then
refused for its time or verify mode: otherwise a future-dated event could be replayed
later, once its time came within the skew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rules.events import FaceMatch, Rejected

Alg = Literal["hmac-sha256", "ed25519"]
ALGS: tuple[Alg, ...] = ("hmac-sha256", "ed25519")
VERIFY_MODES = frozenset({"face", "card", "fingerprint", "face+card"})
MIN_HMAC_KEY_BYTES = 32
"""RFC 2104: a key shorter than the hash output (32 bytes) weakens HMAC-SHA256."""
SIGNATURE_FIELD = "signature"
CANON = "jcs"
"""The value of an event's ``canon``: signed over its RFC 8785 canonical JSON."""
_REQUIRED = ("terminal", "person", "verify_mode", "time", "seq")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_INT = 2**53 - 1
"""RFC 8785 / I-JSON: the largest integer every JSON reader holds exactly."""
OLD_CANON_DETAIL = (
    "signed in the pre-RFC 8785 form (no canon field): the terminal must add canon = 'jcs' and sign "
    "the RFC 8785 canonical JSON (drivers/face/codec.py)"
)


class RejectReason(StrEnum):
    """Why a face event was refused."""

    MALFORMED = "malformed"
    UNKNOWN_TERMINAL = "unknown_terminal"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED_SEQUENCE = "replayed_sequence"
    STALE_TIME = "stale_time"
    WRONG_VERIFY_MODE = "wrong_verify_mode"
    OVERSIZE = "oversize"
    OLD_CANON = "old_canon"
    """No ``canon``: signed in the pre-RFC 8785 form, which is no longer accepted."""
    UNKNOWN_CANON = "unknown_canon"
    """A ``canon`` other than "jcs"."""


@dataclass(frozen=True, slots=True)
class TerminalCfg:
    """One allow-listed face terminal."""

    id: str
    """Device serial as it appears in the event's ``terminal`` field."""
    zone: str
    """Zone the terminal stands in; the interlock binds a match to this zone."""
    alg: Alg
    key: bytes = field(repr=False)
    """HMAC secret (>= 32 bytes) or the raw 32-byte Ed25519 public key."""

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise ValueError(f"face terminal {self.id!r}: id must match {_ID.pattern}")
        if not self.zone:
            raise ValueError(f"face terminal {self.id}: zone must not be empty")
        if self.alg == "hmac-sha256":
            if len(self.key) < MIN_HMAC_KEY_BYTES:
                raise ValueError(
                    f"face terminal {self.id}: HMAC secret is {len(self.key)} bytes, "
                    f"need >= {MIN_HMAC_KEY_BYTES}"
                )
        elif self.alg == "ed25519":
            if len(self.key) != 32:
                raise ValueError(f"face terminal {self.id}: Ed25519 public key must be 32 bytes")
        else:
            raise ValueError(f"face terminal {self.id}: alg must be one of {ALGS}, got {self.alg!r}")


@dataclass(frozen=True, slots=True)
class VerifierCfg:
    """What the verifier accepts."""

    terminals: Mapping[str, TerminalCfg]
    """Allow-list, keyed by terminal id."""
    max_skew_s: float = 30.0
    """Largest accepted |now - event time|, seconds (DOMAIN.md: 30 s)."""
    max_bytes: int = 4096
    """Largest accepted payload; bigger ones are refused before parsing."""
    accepted_modes: frozenset[str] = frozenset({"face"})
    """Verify modes that count as a face identity (add "face+card" to accept 2-factor)."""

    def __post_init__(self) -> None:
        for tid, t in self.terminals.items():
            if tid != t.id:
                raise ValueError(f"face terminals.{tid}: key differs from the terminal id {t.id!r}")
        if not self.max_skew_s > 0:
            raise ValueError(f"face max_skew_s must be > 0, got {self.max_skew_s}")
        if self.max_bytes < 256:
            raise ValueError(f"face max_bytes must be >= 256, got {self.max_bytes}")
        if not self.accepted_modes or not self.accepted_modes <= VERIFY_MODES:
            raise ValueError(f"face accepted_modes must be a non-empty subset of {sorted(VERIFY_MODES)}")
        object.__setattr__(self, "terminals", MappingProxyType(dict(self.terminals)))


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused event, before the shell knows where it came from."""

    reason: RejectReason
    detail: str
    terminal: str | None = None
    """The allow-listed terminal it claims to be from; None when unknown or unparsed."""

    def to_event(self, remote: str) -> Rejected:
        """The engine event: source is ``face:<terminal>``, or ``face:<remote>`` if not allow-listed."""
        return Rejected(source=f"face:{self.terminal or remote}", reason=self.reason.value, detail=self.detail)


@dataclass(frozen=True, slots=True)
class _Event:
    terminal: str
    person: str
    verify_mode: str
    time: datetime
    seq: int
    canon: object
    """The body's ``canon`` (None when absent)."""
    signature: str
    signed: bytes


def canonical_bytes(body: Mapping[str, object]) -> bytes:
    """The bytes a terminal signs: the RFC 8785 canonical JSON (UTF-8) of the body without ``signature``.

    Raises ValueError when the body has none (an integer beyond +-(2**53 - 1), a lone surrogate).
    """
    unsigned: dict[str, Any] = {k: v for k, v in body.items() if k != SIGNATURE_FIELD}
    return rfc8785.dumps(unsigned)


def format_utc(t: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, as the terminals send it."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Malformed(Exception):
    """Internal: parse failure carrying its detail (never leaves this module)."""


def _no_dupes(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise _Malformed(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> object:
    raise _Malformed(f"{name} is not allowed")


def _no_float(text: str) -> object:
    raise _Malformed(f"float {text[:20]!r} is not allowed in the signed body (send it as a string)")


def _parse(raw: bytes) -> _Event:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"not UTF-8 at byte {exc.start}") from None
    try:
        body = json.loads(
            text, object_pairs_hook=_no_dupes, parse_constant=_no_constant, parse_float=_no_float
        )
    except json.JSONDecodeError as exc:
        raise _Malformed(f"not JSON: {exc.msg} at {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise _Malformed(f"not JSON: {str(exc)[:60]}") from None
    except RecursionError:
        raise _Malformed("nested too deep") from None
    if not isinstance(body, dict):
        raise _Malformed(f"expected a JSON object, got {type(body).__name__}")
    for k, v in body.items():
        if not (v is None or isinstance(v, str | int | bool)):
            raise _Malformed(f"field {k[:40]!r}: nested {type(v).__name__} is not allowed")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _MAX_INT:
            raise _Malformed(f"field {k[:40]!r}: integer beyond +-(2**53 - 1) has no RFC 8785 form")
    missing = [k for k in (*_REQUIRED, SIGNATURE_FIELD) if k not in body]
    if missing:
        raise _Malformed(f"missing field(s) {', '.join(missing)}")
    for k in ("terminal", "person", "verify_mode", "time", SIGNATURE_FIELD):
        if not isinstance(body[k], str):
            raise _Malformed(f"field {k} must be a string, got {type(body[k]).__name__}")
    terminal, person, mode, when, sig = (
        body["terminal"], body["person"], body["verify_mode"], body["time"], body[SIGNATURE_FIELD]
    )
    seq = body["seq"]
    for k, v in (("terminal", terminal), ("person", person)):
        if not _ID.fullmatch(v):
            raise _Malformed(f"field {k} must match {_ID.pattern}")
    if not 0 < len(mode) <= 32:
        raise _Malformed("field verify_mode must be 1..32 characters")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise _Malformed(f"field seq must be an integer, got {type(seq).__name__}")
    if not 0 <= seq <= _MAX_INT:
        raise _Malformed("field seq out of range 0..2**53-1")
    try:
        t = datetime.fromisoformat(when)
    except ValueError:
        raise _Malformed(f"time {when[:40]!r} is not ISO 8601") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise _Malformed(f"time {when[:40]!r} has no UTC offset")
    try:
        t = t.astimezone(UTC)
    except OverflowError:
        raise _Malformed(f"time {when[:40]!r} is out of range") from None
    try:
        signed = canonical_bytes(body)
    except ValueError:  # a lone surrogate escape such as "\ud800" has no UTF-8 form
        raise _Malformed("string with a lone surrogate escape") from None
    return _Event(terminal, person, mode, t, seq, body.get("canon"), sig, signed)


def _signature_ok(t: TerminalCfg, signed: bytes, sig: str) -> str:
    """Empty string when valid; otherwise why not (the detail of the rejection)."""
    if t.alg == "hmac-sha256":
        if not _HEX64.fullmatch(sig):
            return "signature must be 64 lowercase hex characters"
        expected = hmac.new(t.key, signed, hashlib.sha256).digest()
        return "" if hmac.compare_digest(expected, bytes.fromhex(sig)) else "HMAC does not match"
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    # Only the canonical encoding: spare bits or missing padding would let one signature
    # be spelled several ways.
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != sig:
        return "signature must be the padded base64 of 64 bytes"
    try:
        Ed25519PublicKey.from_public_bytes(t.key).verify(raw, signed)
    except InvalidSignature:
        return "Ed25519 signature does not verify"
    return ""


@dataclass(frozen=True, slots=True)
class FaceVerifier:
    """The verifier and its replay state, as one immutable value.

    ``verify`` returns the next verifier with the verdict; the caller keeps the new one.
    ``last_seq`` is the state to persist and to restore with ``with_last_seq``.
    """

    cfg: VerifierCfg
    last_seq: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Highest authentic sequence number seen per terminal id."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "last_seq", MappingProxyType(dict(self.last_seq)))

    def with_last_seq(self, last_seq: Mapping[str, int]) -> FaceVerifier:
        """Restore persisted replay state (entries for terminals no longer configured are kept)."""
        return FaceVerifier(self.cfg, last_seq)

    def verify(
        self, raw: bytes, now_utc: datetime, now_mono: float
    ) -> tuple[FaceVerifier, FaceMatch | Rejection]:
        """Check one raw event. Never raises on any input bytes."""
        if len(raw) > self.cfg.max_bytes:
            return self, Rejection(RejectReason.OVERSIZE, f"{len(raw)} bytes > {self.cfg.max_bytes}")
        try:
            ev = _parse(raw)
        except _Malformed as exc:
            return self, Rejection(RejectReason.MALFORMED, str(exc))
        term = self.cfg.terminals.get(ev.terminal)
        if term is None:
            return self, Rejection(RejectReason.UNKNOWN_TERMINAL, f"terminal {ev.terminal!r} is not allow-listed")
        if ev.canon is None:
            return self, Rejection(RejectReason.OLD_CANON, OLD_CANON_DETAIL, term.id)
        if ev.canon != CANON:
            return self, Rejection(
                RejectReason.UNKNOWN_CANON,
                f"canon {repr(ev.canon)[:40]} is not a signed form this gateway verifies: only canon = 'jcs', "
                "the RFC 8785 canonical JSON (drivers/face/codec.py)",
                term.id,
            )
        why = _signature_ok(term, ev.signed, ev.signature)
        if why:
            return self, Rejection(RejectReason.BAD_SIGNATURE, why, term.id)
        last = self.last_seq.get(term.id)
        if last is not None and ev.seq <= last:
            return self, Rejection(RejectReason.REPLAYED_SEQUENCE, f"seq {ev.seq} <= last {last}", term.id)
        nxt = FaceVerifier(self.cfg, {**self.last_seq, term.id: ev.seq})
        skew = (ev.time - now_utc).total_seconds()
        if abs(skew) > self.cfg.max_skew_s:
            where = "in the future" if skew > 0 else "in the past"
            return nxt, Rejection(
                RejectReason.STALE_TIME,
                f"event time {abs(skew):.1f} s {where} (max {self.cfg.max_skew_s:g} s)",
                term.id,
            )
        if ev.verify_mode not in self.cfg.accepted_modes:
            return nxt, Rejection(
                RejectReason.WRONG_VERIFY_MODE,
                f"verify_mode {ev.verify_mode!r} is not one of {sorted(self.cfg.accepted_modes)}",
                term.id,
            )
        match = FaceMatch(
            terminal=term.id, person=ev.person, at=now_mono, utc=format_utc(ev.time), seq=ev.seq, zone=term.zone
        )
        return nxt, match


def encode_last_seq(last_seq: Mapping[str, int]) -> bytes:
    """Replay state as bytes for the daemon to persist."""
    return json.dumps(dict(last_seq), sort_keys=True).encode("utf-8")


def decode_last_seq(raw: bytes) -> dict[str, int]:
    """Inverse of `encode_last_seq`; raises ValueError naming the problem."""
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in data.items()
    ):
        raise ValueError("replay state must be a JSON object of terminal id -> integer seq")
    return {str(k): int(v) for k, v in data.items()}

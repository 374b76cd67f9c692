"""Pure MQTT payload codec: topic filters, JSON/raw values, units and timestamps.

Nothing here does I/O, reads a clock or logs. Every decoder takes bytes that anyone with
publish rights on the broker may have written, so every decoder returns a `Rejection`
value for bad input and never raises (a Hypothesis test holds it to that).

Value paths are dotted: ``"data.values.0"`` walks key ``data``, key ``values``, then
index 0 of a list. A segment is a dict key when the node is an object and a
non-negative decimal index when the node is an array. The empty path ``""`` means the
whole document (a payload that is just ``21.5``).

Numbers are strict: JSON numbers only, never booleans (Python's ``True`` is an ``int``),
never numeric strings, never the non-standard tokens ``NaN``/``Infinity`` that Python's
``json`` accepts by default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from .errors import MqttConfigError

DEFAULT_MAX_BYTES: Final = 64 * 1024
"""Largest accepted scalar payload: a sensor reading is tens of bytes."""

_MS_EPOCH_THRESHOLD: Final = 1e11
"""Epoch numbers above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)."""

_RAW_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE_WORDS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


class RejectReason(StrEnum):
    """Why an MQTT payload was refused. Counted per topic and reason, never raised."""

    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OVERSIZE = "oversize"
    UNIT_MISMATCH = "unit_mismatch"
    BAD_TIMESTAMP = "bad_timestamp"
    """The timestamp field is present but not epoch s/ms or ISO 8601 with an offset."""
    STALE = "stale"
    """The payload's own timestamp is older than the mapping's `max_age_s`."""
    FUTURE = "future_timestamp"
    """The payload's own timestamp is ahead of the gateway by more than `max_age_s`."""
    BAD_FRAME = "bad_frame"
    """A waveform frame with a bad sample rate, too few or too many samples."""
    BAD_TOPIC = "bad_topic"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_ROOM = "unknown_room"
    RETAINED = "retained"
    """A retained message without its own timestamp: its age is unknown, so it is not used."""
    UNMAPPED = "unmapped"
    CODEC_ERROR = "codec_error"
    """A decoder raised (a bug): the source counts it instead of crashing the daemon."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A payload that was refused, and why."""

    reason: RejectReason
    detail: str = ""
    """Short human text: the path, the offending type, the sizes."""


class PayloadKind(StrEnum):
    JSON = "json"
    """A JSON document; the value is found at `value_path`."""
    RAW = "raw"
    """The payload is the number itself as UTF-8 text, e.g. ``b"20.9"``."""


@dataclass(frozen=True, slots=True)
class Sample:
    """A decoded scalar value and the payload's own timestamp, if it has one."""

    value: float
    """A finite number, in the mapping's unit."""
    ts: float | None = None
    """Epoch seconds (UTC) from the payload's timestamp field; None without one."""


# -- topic filters ---------------------------------------------------------------------


def check_filter(topic_filter: str) -> str | None:
    """Return what is wrong with an MQTT topic filter, or None when it is valid."""
    if not topic_filter:
        return "a topic filter must not be empty"
    if "\x00" in topic_filter:
        return "a topic filter must not contain NUL"
    if len(topic_filter.encode("utf-8", "surrogatepass")) > 65535:
        return "a topic filter is at most 65535 bytes"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one, e.g. 'plant/#'"
        if "+" in level and level != "+":
            return "'+' must be a whole level, e.g. 'plant/+/gas'"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` matches `topic_filter` under MQTT 3.1.1/5 rules.

    ``+`` matches exactly one level (an empty level too), ``#`` matches the parent level
    and any number of levels below it, and a wildcard in the first level never matches
    a topic that starts with ``$`` (broker topics such as ``$SYS``).
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    flt = topic_filter.split("/")
    levels = topic.split("/")
    for i, part in enumerate(flt):
        if part == "#":
            return True
        if i >= len(levels):
            return False
        if part != "+" and part != levels[i]:
            return False
    return len(flt) == len(levels)


# -- the mapping -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayloadMapping:
    """How the payloads on one topic filter become readings of one signal.

    Several mappings may share a topic (a multi-gas JSON document feeds several signals).
    """

    topic: str
    """MQTT topic filter; ``+`` and ``#`` allowed."""
    signal: str
    """Signal id from the configuration."""
    unit: str
    """The unit the signal is configured in; the payload must be in it."""
    kind: PayloadKind = PayloadKind.JSON
    value_path: str = "value"
    """Dotted path to the number in a JSON payload ("" = the whole document)."""
    unit_path: str | None = None
    """Dotted path to a unit string; when present in a payload it must equal `unit`."""
    ts_path: str | None = None
    """Dotted path to the sensor's timestamp: epoch s or ms, or ISO 8601 with an offset."""
    qos: int = 1
    """Subscription QoS; 1 for safety signals (delivered at least once while connected)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Larger payloads are refused before they are parsed."""
    max_age_s: float = 10.0
    """With `ts_path`: payloads older (or further ahead) than this are refused."""

    def __post_init__(self) -> None:
        place = f"mqtt_in.mappings[{self.signal or '?'}]"
        if not self.signal:
            raise MqttConfigError(place + ".signal", "must not be empty")
        if (problem := check_filter(self.topic)) is not None:
            raise MqttConfigError(place + ".topic", f"{self.topic!r}: {problem}")
        if not isinstance(self.kind, PayloadKind):
            raise MqttConfigError(place + ".kind", f"{self.kind!r}: use 'json' or 'raw'")
        if self.kind is PayloadKind.RAW and (self.unit_path is not None or self.ts_path is not None):
            raise MqttConfigError(place, "a raw payload has no unit_path or ts_path: use kind 'json'")
        for name, path in (("value_path", self.value_path), ("unit_path", self.unit_path),
                           ("ts_path", self.ts_path)):
            if path is not None and path != "" and "" in path.split("."):
                raise MqttConfigError(f"{place}.{name}", f"{path!r} has an empty segment")
        if self.qos not in (0, 1, 2):
            raise MqttConfigError(place + ".qos", f"{self.qos}: QoS is 0, 1 or 2")
        if self.max_bytes <= 0:
            raise MqttConfigError(place + ".max_bytes", "must be > 0")
        if not self.max_age_s > 0:
            raise MqttConfigError(place + ".max_age_s", "must be > 0")


def rms_mapping(topic: str, signal: str, *, qos: int = 1) -> PayloadMapping:
    """The mapping of a vibration sensor's precomputed velocity RMS, ``{"rms_mm_s": 2.3}``."""
    return PayloadMapping(topic=topic, signal=signal, unit="mm/s", value_path="rms_mm_s", qos=qos)


# -- JSON helpers shared by every decoder ------------------------------------------------


class _Missing:
    pass


MISSING: Final = _Missing()


def _non_finite_constant(token: str) -> float:
    # json.loads calls this for NaN/Infinity/-Infinity; keep them as floats so the value
    # check reports "not_finite" (the precise reason) instead of "bad_json".
    return float(token.replace("Infinity", "inf"))


_DECODER = json.JSONDecoder(parse_constant=_non_finite_constant)
"""One decoder for every payload (json.loads with a hook builds a new one per call: profiled)."""


def parse_json(payload: bytes, max_bytes: int) -> object | Rejection:
    """Size check, UTF-8 and JSON parse; a `Rejection` for each way that can fail."""
    if len(payload) > max_bytes:
        return Rejection(RejectReason.OVERSIZE, f"{len(payload)} bytes > {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_UTF8, f"byte {exc.start}")
    try:
        doc: object = _DECODER.decode(text)
        return doc
    except RecursionError:
        return Rejection(RejectReason.BAD_JSON, "nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and int strings over Python's digit limit
        return Rejection(RejectReason.BAD_JSON, str(exc)[:80])


def lookup(doc: object, path: str) -> object:
    """The node at a dotted path, or `MISSING`."""
    if path == "":
        return doc
    node = doc
    for seg in path.split("."):
        if isinstance(node, dict):
            if seg not in node:
                return MISSING
            node = node[seg]
        elif isinstance(node, list):
            if not seg.isdigit() or not seg.isascii():
                return MISSING
            idx = int(seg)
            if idx >= len(node):
                return MISSING
            node = node[idx]
        else:
            return MISSING
    return node


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def as_number(v: object, what: str) -> float | Rejection:
    """A finite float from a JSON number; bools, strings and non-finite values are refused."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return Rejection(RejectReason.WRONG_TYPE, f"{what}: {_type_name(v)}, need a number")
    try:
        f = float(v)
    except OverflowError:
        return Rejection(RejectReason.NOT_FINITE, f"{what}: integer too large")
    if not math.isfinite(f):
        return Rejection(RejectReason.NOT_FINITE, f"{what}: {f}")
    return f


def parse_timestamp(v: object) -> float | Rejection:
    """Epoch seconds (UTC) from epoch s, epoch ms or ISO 8601 with a UTC offset."""
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            return Rejection(RejectReason.BAD_TIMESTAMP, f"not ISO 8601: {v[:40]!r}")
        if dt.tzinfo is None:
            # A naive time is local to somebody; guessing would shift readings by hours.
            return Rejection(RejectReason.BAD_TIMESTAMP, f"no UTC offset: {v[:40]!r}")
        try:
            return dt.timestamp()
        except (OverflowError, ValueError, OSError):
            return Rejection(RejectReason.BAD_TIMESTAMP, f"out of range: {v[:40]!r}")
    num = as_number(v, "timestamp")
    if isinstance(num, Rejection):
        return Rejection(RejectReason.BAD_TIMESTAMP, num.detail)
    if num <= 0:
        return Rejection(RejectReason.BAD_TIMESTAMP, f"not a positive epoch: {num}")
    return num / 1000.0 if num > _MS_EPOCH_THRESHOLD else num


def check_age(ts: float, wall_now: float, max_age_s: float) -> float | Rejection:
    """The age of a payload timestamp in seconds (>= 0), or why it cannot be used.

    A timestamp slightly ahead of the gateway (clock skew within `max_age_s`) counts as
    age 0: it never makes a reading look newer than its arrival.
    """
    age = wall_now - ts
    if age > max_age_s:
        return Rejection(RejectReason.STALE, f"{age:.1f} s old > {max_age_s} s")
    if age < -max_age_s:
        return Rejection(RejectReason.FUTURE, f"{-age:.1f} s ahead > {max_age_s} s")
    return max(age, 0.0)


# -- scalar decode -----------------------------------------------------------------------


def _decode_raw(mapping: PayloadMapping, payload: bytes) -> Sample | Rejection:
    if len(payload) > mapping.max_bytes:
        return Rejection(RejectReason.OVERSIZE, f"{len(payload)} bytes > {mapping.max_bytes}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_UTF8, f"byte {exc.start}")
    if text.lower() in _NON_FINITE_WORDS:
        return Rejection(RejectReason.NOT_FINITE, text)
    # A strict grammar: float() would also take "1_000", "infinity" and full-width digits.
    if not _RAW_NUMBER.fullmatch(text):
        return Rejection(RejectReason.WRONG_TYPE, f"not a number: {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        return Rejection(RejectReason.NOT_FINITE, text[:40])
    return Sample(value)


def _decode_json(mapping: PayloadMapping, payload: bytes) -> Sample | Rejection:
    doc = parse_json(payload, mapping.max_bytes)
    if isinstance(doc, Rejection):
        return doc
    raw = lookup(doc, mapping.value_path)
    if raw is MISSING:
        return Rejection(RejectReason.MISSING_FIELD, mapping.value_path)
    value = as_number(raw, mapping.value_path or "payload")
    if isinstance(value, Rejection):
        return value
    if mapping.unit_path is not None:
        unit = lookup(doc, mapping.unit_path)
        if unit is not MISSING:
            if not isinstance(unit, str):
                return Rejection(RejectReason.WRONG_TYPE, f"{mapping.unit_path}: {_type_name(unit)}, need a string")
            # Exact comparison: "mA" is not "MA", and a refused reading is the safe side.
            if unit.strip() != mapping.unit:
                return Rejection(RejectReason.UNIT_MISMATCH, f"{unit.strip()[:20]!r}, expected {mapping.unit!r}")
    ts: float | None = None
    if mapping.ts_path is not None:
        raw_ts = lookup(doc, mapping.ts_path)
        if raw_ts is MISSING:
            return Rejection(RejectReason.MISSING_FIELD, mapping.ts_path)
        parsed = parse_timestamp(raw_ts)
        if isinstance(parsed, Rejection):
            return parsed
        ts = parsed
    return Sample(value, ts)


_DECODERS: Final[dict[PayloadKind, Callable[[PayloadMapping, bytes], Sample | Rejection]]] = {
    PayloadKind.JSON: _decode_json,
    PayloadKind.RAW: _decode_raw,
}


def decode_sample(mapping: PayloadMapping, payload: bytes) -> Sample | Rejection:
    """Decode a payload to its value and (optional) timestamp; never raises on bad input."""
    return _DECODERS[mapping.kind](mapping, payload)


def decode(mapping: PayloadMapping, payload: bytes) -> float | Rejection:
    """Decode a payload to the signal's value; never raises on bad input."""
    result = decode_sample(mapping, payload)
    return result if isinstance(result, Rejection) else result.value

"""Pure decoder of vibration waveform frames published over MQTT.

A frame is ``{"sample_rate_hz": 8192, "unit": "m/s2" | "g", "samples": [...]}``: one
block of acceleration samples, typically 1 s. This module only validates and converts;
the analysis (DC removal, band-pass, integration to velocity RMS) belongs to the
condition-monitoring code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from .codec import MISSING, Rejection, RejectReason, as_number, check_filter, lookup, parse_json
from .errors import MqttConfigError

STANDARD_GRAVITY: Final = 9.80665
"""m/s2 per g (ISO 80000-3)."""


class AccelUnit(StrEnum):
    MS2 = "m/s2"
    G = "g"


@dataclass(frozen=True, slots=True)
class WaveformMapping:
    """How the frames on one topic filter become waveforms of one vibration signal."""

    topic: str
    """MQTT topic filter; ``+`` and ``#`` allowed."""
    signal: str
    """Signal id of the vibration channel."""
    qos: int = 0
    """Frames are telemetry: a lost frame is replaced by the next one a second later."""
    max_bytes: int = 2 * 1024 * 1024
    """65536 samples as JSON text need up to about 1.5 MB."""
    min_samples: int = 256
    max_samples: int = 65536

    def __post_init__(self) -> None:
        place = f"mqtt_in.waveforms[{self.signal or '?'}]"
        if not self.signal:
            raise MqttConfigError(place + ".signal", "must not be empty")
        if (problem := check_filter(self.topic)) is not None:
            raise MqttConfigError(place + ".topic", f"{self.topic!r}: {problem}")
        if self.qos not in (0, 1, 2):
            raise MqttConfigError(place + ".qos", f"{self.qos}: QoS is 0, 1 or 2")
        if not 1 <= self.min_samples <= self.max_samples:
            raise MqttConfigError(place, "need 1 <= min_samples <= max_samples")
        if self.max_bytes <= 0:
            raise MqttConfigError(place + ".max_bytes", "must be > 0")


@dataclass(frozen=True, slots=True, eq=False)
class WaveformFrame:
    """One validated block of acceleration samples (compared by identity: it holds an array)."""

    signal: str
    """Signal id of the vibration channel."""
    sample_rate_hz: float
    """Samples per second, > 0."""
    unit: AccelUnit
    """Unit of `samples` as sent by the sensor."""
    samples: npt.NDArray[np.float64]
    """Read-only, finite, float64."""
    at: float
    """Monotonic seconds when the frame arrived (the end of the block, give or take transport)."""

    @property
    def duration_s(self) -> float:
        """Length of the block in seconds."""
        return len(self.samples) / self.sample_rate_hz

    def in_ms2(self) -> npt.NDArray[np.float64]:
        """The samples in m/s2 (a converted copy when the frame is in g)."""
        if self.unit is AccelUnit.G:
            return self.samples * STANDARD_GRAVITY
        return self.samples


def decode_waveform(mapping: WaveformMapping, payload: bytes, at: float) -> WaveformFrame | Rejection:
    """Decode and validate a waveform frame; never raises on bad input."""
    doc = parse_json(payload, mapping.max_bytes)
    if isinstance(doc, Rejection):
        return doc
    rate_raw = lookup(doc, "sample_rate_hz")
    unit_raw = lookup(doc, "unit")
    samples_raw = lookup(doc, "samples")
    for name, v in (("sample_rate_hz", rate_raw), ("unit", unit_raw), ("samples", samples_raw)):
        if v is MISSING:
            return Rejection(RejectReason.MISSING_FIELD, name)
    rate = as_number(rate_raw, "sample_rate_hz")
    if isinstance(rate, Rejection):
        return rate
    if rate <= 0:
        return Rejection(RejectReason.BAD_FRAME, f"sample_rate_hz {rate} <= 0")
    if not isinstance(unit_raw, str):
        return Rejection(RejectReason.WRONG_TYPE, "unit: need a string")
    try:
        unit = AccelUnit(unit_raw)
    except ValueError:
        return Rejection(RejectReason.UNIT_MISMATCH, f"{unit_raw[:20]!r}, expected 'm/s2' or 'g'")
    if not isinstance(samples_raw, list):
        return Rejection(RejectReason.WRONG_TYPE, "samples: need an array")
    n = len(samples_raw)
    if not mapping.min_samples <= n <= mapping.max_samples:
        return Rejection(
            RejectReason.BAD_FRAME, f"{n} samples, need {mapping.min_samples}..{mapping.max_samples}"
        )
    # np.asarray would quietly turn True into 1.0 and "1.5" into 1.5: check types first.
    for i, v in enumerate(samples_raw):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return Rejection(RejectReason.WRONG_TYPE, f"samples.{i}: need a number")
    try:
        samples = np.asarray(samples_raw, dtype=np.float64)
    except OverflowError:
        return Rejection(RejectReason.NOT_FINITE, "samples: integer too large")
    bad = np.flatnonzero(~np.isfinite(samples))
    if bad.size:
        return Rejection(RejectReason.NOT_FINITE, f"samples.{int(bad[0])}")
    samples.setflags(write=False)
    return WaveformFrame(signal=mapping.signal, sample_rate_hz=rate, unit=unit, samples=samples, at=at)

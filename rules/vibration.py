"""Vibration analysis (ISO 10816-3 / 20816-3 velocity RMS), zones and baseline, pure.

`analyze` turns one acceleration waveform into velocity RMS in mm/s, 10-1000 Hz:

1. DC is removed (the mean), then the frame goes through one real FFT (`numpy.fft.rfft`).
2. A periodic Hann window is applied in the frequency domain, as the exact 3-tap
   convolution ``0.5*X_k - 0.25*(X_{k-1} + X_{k+1})`` (no second FFT).
3. Band-pass in the frequency domain: bins outside ``band`` (inclusive edges) are zeroed.
4. Integration to velocity divides each bin by ``j*omega`` (omega = 2*pi*f), x1000 for mm/s.
5. Velocity RMS by Parseval over the one-sided windowed spectrum, power-corrected for the
   window: ``rms**2 = 2 * sum|V_k|**2 / (N * sum(w**2))`` with ``sum(w**2) = 3N/8``.
   Why Hann and not rectangular: a tone that does not complete whole cycles in the frame
   leaks with a rectangular window (power falling only as 1/k**2), and the 1/omega of the
   integration amplifies the leakage that lands at low frequencies: a 123.4 Hz sine came
   out 1.8 % high. Hann leakage falls as 1/k**6; over 12-990 Hz and any phase a pure sine
   comes out within 0.4 % of ``A / (sqrt(2) * 2*pi*f)``.
6. Peaks are local maxima of that velocity spectrum; a peak's amplitude is the **RMS
   velocity in mm/s** of the energy in the +-2 bins around it (the Hann main lobe), with
   the same power correction, so it does not depend on where the tone falls between bins
   (no scalloping loss); its frequency is the power-weighted centroid of those bins.
7. Acceleration RMS (Parseval, no window, whole frame) and crest factor (peak / RMS in the
   time domain after one inverse FFT, over the central 80 % of the frame: `CREST_EDGE`)
   describe the band-passed acceleration.

No clock, no I/O, no randomness; fully vectorized (no Python loop over samples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

G_M_S2 = 9.80665
"""Standard gravity: 1 g in m/s2."""

MIN_SAMPLES = 256
MIN_DURATION_S = 1.0
"""ISO 20816: the RMS is taken over at least 1 s."""
NYQUIST_MARGIN = 2.56
"""Sample at >= 2.56 x the top of the band (2.56 kHz for 1000 Hz), the usual analyzer ratio."""
PEAK_COUNT = 3
CREST_EDGE = 0.1
"""Fraction of the frame dropped at each end for the crest factor: the brick-wall band-pass
of a frame that is not a whole number of cycles rings at the wrap-around (a pure sine read
~1.69 instead of 1.41 with the edges; within ~4 % of sqrt(2) without them)."""
PEAK_HALF_WIDTH = 2
"""Bins either side of a peak summed for its amplitude (the periodic Hann main lobe)."""
PEAK_FLOOR = 0.01
"""Local maxima below this fraction of the overall velocity RMS are noise, not peaks."""

Unit = Literal["m/s2", "g"]
_UNIT_SCALE: Mapping[str, float] = {"m/s2": 1.0, "g": G_M_S2}


class RejectReason(StrEnum):
    """Why a waveform was not analyzed. The caller turns it into a BAD reading."""

    TOO_SHORT = "too_short"
    NOT_FINITE = "not_finite"
    LOW_SAMPLE_RATE = "low_sample_rate"
    BAD_UNIT = "bad_unit"
    BAD_SHAPE = "bad_shape"


class BandError(ValueError):
    """The analysis band is not usable (a configuration error, not a field fault)."""

    def __init__(self, band: tuple[float, float]) -> None:
        self.band = band
        super().__init__(
            f"vibration band {band!r}: need 0 < low < high (ISO 10816-3 uses (10.0, 1000.0)); fix the config"
        )


@dataclass(frozen=True, slots=True)
class Peak:
    """One spectral peak of the velocity spectrum."""

    frequency_hz: float
    """Power-weighted centroid of the peak's bins."""
    velocity_rms_mm_s: float
    """RMS velocity of the peak's energy in mm/s (a pure tone: amplitude / sqrt(2))."""


@dataclass(frozen=True, slots=True)
class VibrationResult:
    """What one waveform says, all in the band."""

    velocity_rms_mm_s: float
    """ISO 10816-3 severity: velocity RMS in mm/s over the band."""
    acceleration_rms_m_s2: float
    """RMS of the band-passed acceleration in m/s2."""
    crest_factor: float
    """Peak / RMS of the band-passed acceleration (0.0 for a silent frame)."""
    peaks: tuple[Peak, ...]
    """Up to three peaks, largest first."""
    sample_rate_hz: float
    samples: int
    band: tuple[float, float]


@dataclass(frozen=True, slots=True)
class VibrationRejection:
    """A waveform that was refused, with the reason and a detail naming the fix."""

    reason: RejectReason
    detail: str

    @property
    def bad_reason(self) -> str:
        """Text for `Reading.reason` (a `BadReason` value plus detail after a colon)."""
        return f"bad_payload:{self.reason.value}"


def _reject(reason: RejectReason, detail: str) -> VibrationRejection:
    return VibrationRejection(reason, detail)


def analyze(
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    unit: str = "m/s2",
    band: tuple[float, float] = (10.0, 1000.0),
) -> VibrationResult | VibrationRejection:
    """Analyze one acceleration waveform; see the module docstring for the method.

    `unit` is "m/s2" or "g". Bad frames come back as a `VibrationRejection`, never raise;
    only an unusable `band` (configuration) raises `BandError`.
    """
    lo, hi = float(band[0]), float(band[1])
    if not (0.0 < lo < hi and math.isfinite(hi)):
        raise BandError(band)
    scale = _UNIT_SCALE.get(unit)
    if scale is None:
        return _reject(RejectReason.BAD_UNIT, f"unit {unit!r}: expected 'm/s2' or 'g'")
    if not math.isfinite(sample_rate_hz) or sample_rate_hz < NYQUIST_MARGIN * hi:
        return _reject(
            RejectReason.LOW_SAMPLE_RATE,
            f"sample rate {sample_rate_hz} Hz: need >= {NYQUIST_MARGIN * hi:g} Hz for a {hi:g} Hz band",
        )
    try:
        x = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        return _reject(RejectReason.BAD_SHAPE, "samples are not numbers")
    if x.ndim != 1:
        return _reject(RejectReason.BAD_SHAPE, f"samples have shape {x.shape}: expected one axis")
    n = int(x.size)
    if n < MIN_SAMPLES or n < MIN_DURATION_S * sample_rate_hz:
        return _reject(
            RejectReason.TOO_SHORT,
            f"{n} samples at {sample_rate_hz} Hz: need >= {MIN_SAMPLES} samples and >= {MIN_DURATION_S:g} s",
        )
    if not bool(np.isfinite(x).all()):
        return _reject(RejectReason.NOT_FINITE, f"{int(n - np.isfinite(x).sum())} non-finite samples")

    x = (x - x.mean()) * scale
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate_hz)
    in_band = (freqs >= lo) & (freqs <= hi)
    accel = np.where(in_band, spec, 0.0)
    acc_pow = accel.real**2 + accel.imag**2
    acc_rms = math.sqrt(2.0 * float(acc_pow.sum())) / n
    crest = _crest(np.fft.irfft(accel, n)) if acc_rms > 0.0 else 0.0

    # Periodic Hann applied in the frequency domain, before the band-pass: exact, and spares
    # a second FFT. X[-1] = conj(X[1]) for a real frame; the Nyquist bin is outside the band.
    left = np.concatenate(([np.conj(spec[1])], spec[:-1]))
    right = np.concatenate((spec[1:], [0.0]))
    hann = 0.5 * spec - 0.25 * (left + right)
    omega = 2.0 * np.pi * freqs
    omega[0] = 1.0  # DC is zeroed by the band anyway; avoids a division by zero
    vel = np.where(in_band, hann, 0.0) / (1j * omega) * 1000.0  # m/s -> mm/s
    vel_pow = vel.real**2 + vel.imag**2
    vel_rms = math.sqrt(float(vel_pow.sum()) * _hann_to_rms2(n))
    return VibrationResult(
        velocity_rms_mm_s=vel_rms,
        acceleration_rms_m_s2=acc_rms,
        crest_factor=crest,
        peaks=_peaks(vel_pow, freqs, n, vel_rms),
        sample_rate_hz=float(sample_rate_hz),
        samples=n,
        band=(lo, hi),
    )


def _crest(acc_t: npt.NDArray[np.float64]) -> float:
    """Peak / RMS over the central part of the band-passed frame (see CREST_EDGE)."""
    e = int(acc_t.size * CREST_EDGE)
    mid = acc_t[e : acc_t.size - e]
    rms = math.sqrt(float(np.mean(mid * mid)))
    return float(np.abs(mid).max()) / rms if rms > 0.0 else 0.0


def _hann_to_rms2(n: int) -> float:
    """Scale from one-sided Hann power to mean square: 2 / (N * sum(w**2)), sum(w**2) = 3N/8."""
    return 2.0 / (n * (3.0 * n / 8.0))


def _peaks(
    power: npt.NDArray[np.float64], freqs: npt.NDArray[np.floating[Any]], n: int, vel_rms: float
) -> tuple[Peak, ...]:
    if vel_rms <= 0.0:
        return ()
    mid = power[1:-1]
    is_max = np.zeros(power.shape, dtype=bool)
    is_max[1:-1] = (mid > power[:-2]) & (mid >= power[2:])
    idx = np.flatnonzero(is_max)
    if idx.size == 0:
        return ()
    k = np.arange(-PEAK_HALF_WIDTH, PEAK_HALF_WIDTH + 1)
    lobes = np.clip(idx[:, None] + k[None, :], 0, power.size - 1)
    lobe_pow = power[lobes]
    energy = lobe_pow.sum(axis=1)
    rms = np.sqrt(energy * _hann_to_rms2(n))
    keep = rms >= PEAK_FLOOR * vel_rms
    lobes, lobe_pow, energy, rms = lobes[keep], lobe_pow[keep], energy[keep], rms[keep]
    order = np.argsort(-rms, kind="stable")[:PEAK_COUNT]
    centroid = (freqs[lobes[order]] * lobe_pow[order]).sum(axis=1) / energy[order]
    return tuple(
        Peak(frequency_hz=float(f), velocity_rms_mm_s=float(r)) for f, r in zip(centroid, rms[order], strict=True)
    )


# --- ISO 10816-3 / 20816-3 zones -------------------------------------------------------

Zone = Literal["A", "B", "C", "D"]
Group = Literal[1, 2]
Foundation = Literal["rigid", "flexible"]

ISO_10816_3: Mapping[tuple[int, str], tuple[float, float, float]] = {
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
}
"""Zone boundaries A/B, B/C, C/D in mm/s RMS (DOMAIN.md, [verify] against the standard).
Group 1: > 300 kW; group 2: 15-300 kW."""


class IsoCfgError(ValueError):
    """An ISO zone configuration that cannot be right."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"iso.{field}: {detail}")


@dataclass(frozen=True, slots=True)
class IsoCfg:
    """ISO 10816-3 class of one machine; boundaries default from the table."""

    group: Group = 2
    """1: large machines (> 300 kW); 2: medium (15-300 kW)."""
    foundation: Foundation = "rigid"
    ab: float | None = None
    """Boundary A/B in mm/s (None: from the table)."""
    bc: float | None = None
    """Boundary B/C in mm/s: alert (zone C) at or above it."""
    cd: float | None = None
    """Boundary C/D in mm/s: trip (zone D) at or above it."""

    def __post_init__(self) -> None:
        key = (self.group, self.foundation)
        if key not in ISO_10816_3:
            raise IsoCfgError("group", f"{key!r}: expected group 1|2 and foundation rigid|flexible")
        ab, bc, cd = self.boundaries
        if not (0.0 < ab < bc < cd and math.isfinite(cd)):
            raise IsoCfgError("ab/bc/cd", f"need 0 < A/B < B/C < C/D, got {ab}/{bc}/{cd}")

    @property
    def boundaries(self) -> tuple[float, float, float]:
        """(A/B, B/C, C/D) in mm/s, overrides applied."""
        ab, bc, cd = ISO_10816_3[(self.group, self.foundation)]
        return (
            ab if self.ab is None else self.ab,
            bc if self.bc is None else self.bc,
            cd if self.cd is None else self.cd,
        )


def iso_zone(v_rms: float, cfg: IsoCfg) -> Zone:
    """Zone of a velocity RMS in mm/s; a value on a boundary belongs to the zone above."""
    if not (math.isfinite(v_rms) and v_rms >= 0.0):
        raise ValueError(f"iso_zone: velocity RMS must be finite and >= 0 mm/s, got {v_rms!r}")
    ab, bc, cd = cfg.boundaries
    if v_rms >= cd:
        return "D"
    if v_rms >= bc:
        return "C"
    return "B" if v_rms >= ab else "A"


# --- Baseline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaselineCfg:
    """How a machine's own normal vibration is learned and when a change is flagged."""

    learn_count: int = 60
    """Good RMS values whose median becomes the baseline."""
    change_ratio: float = 1.25
    """Change alert at RMS >= baseline x this (DOMAIN.md: baseline + 25 %)."""
    min_running_mm_s: float = 0.2
    """Values below this are a stopped machine: not learned (a stopped-machine baseline would
    make every start a change alert)."""

    def __post_init__(self) -> None:
        if self.learn_count < 1:
            raise ValueError(f"baseline.learn_count: must be >= 1, got {self.learn_count}")
        if not self.change_ratio > 1.0:
            raise ValueError(f"baseline.change_ratio: must be > 1, got {self.change_ratio}")
        if not self.min_running_mm_s >= 0.0:
            raise ValueError(f"baseline.min_running_mm_s: must be >= 0, got {self.min_running_mm_s}")


@dataclass(frozen=True, slots=True)
class Baseline:
    """Learning or learned baseline of one machine; persist it with `to_dict`."""

    value: float | None = None
    """Learned (or restored) baseline RMS in mm/s; None while learning."""
    learning: tuple[float, ...] = ()
    """Good values collected so far (empty once learned)."""

    @classmethod
    def restored(cls, value: float) -> Baseline:
        """A baseline restored from storage: no learning needed."""
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"baseline: restored value must be finite and > 0 mm/s, got {value!r}")
        return cls(value=float(value))

    def feed(self, v_rms: float, cfg: BaselineCfg) -> Baseline:
        """Add one good RMS value; returns self when nothing changes (learned, or not running)."""
        if self.value is not None or not math.isfinite(v_rms) or v_rms < cfg.min_running_mm_s:
            return self
        learning = (*self.learning, float(v_rms))
        if len(learning) < cfg.learn_count:
            return replace(self, learning=learning)
        return Baseline(value=float(np.median(learning)))

    def exceeded(self, v_rms: float, cfg: BaselineCfg) -> bool:
        """Change alert: a learned baseline and RMS >= baseline x ratio."""
        return self.value is not None and v_rms >= self.value * cfg.change_ratio

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict."""
        return {"value": self.value, "learning": list(self.learning)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Baseline:
        """Inverse of `to_dict`; raises ValueError naming the bad field."""
        value = d.get("value")
        raw = d.get("learning", [])
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"baseline.value: expected a number or null, got {value!r}")
            return cls.restored(float(value))
        if not isinstance(raw, list | tuple):
            raise ValueError(f"baseline.learning: expected a list of numbers, got {raw!r}")
        items = cast(list[object], list(raw))
        out: list[float] = []
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"baseline.learning[{i}]: expected a finite number >= 0, got {v!r}")
            out.append(float(v))
        return cls(learning=tuple(out))

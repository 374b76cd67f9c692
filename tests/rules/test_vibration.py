"""Known-answer tests of rules.vibration: analysis, ISO zones, baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.vibration import (
    G_M_S2,
    BandError,
    Baseline,
    BaselineCfg,
    IsoCfg,
    IsoCfgError,
    Peak,
    RejectReason,
    VibrationRejection,
    VibrationResult,
    analyze,
    iso_zone,
)

FS = 8192.0


def sine(amp: float, f: float, fs: float = FS, seconds: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(fs * seconds)) / fs
    return amp * np.sin(2 * np.pi * f * t + phase)


def v_rms(amp_m_s2: float, f: float) -> float:
    """Analytic velocity RMS in mm/s of an acceleration sine: A / (sqrt(2) * 2*pi*f)."""
    return amp_m_s2 / (math.sqrt(2) * 2 * math.pi * f) * 1000.0


def ok(r: VibrationResult | VibrationRejection) -> VibrationResult:
    assert isinstance(r, VibrationResult), r
    return r


@pytest.mark.parametrize("f", [50.0, 160.0, 400.0, 123.4, 15.3, 987.6])
@pytest.mark.parametrize("phase", [0.0, 1.1])
def test_sine_velocity_rms_matches_analytic(f: float, phase: float) -> None:
    r = ok(analyze(sine(10.0, f, phase=phase), FS, "m/s2"))
    assert r.velocity_rms_mm_s == pytest.approx(v_rms(10.0, f), rel=0.02)
    assert r.acceleration_rms_m_s2 == pytest.approx(10.0 / math.sqrt(2), rel=0.02)
    assert r.crest_factor == pytest.approx(math.sqrt(2), rel=0.05)
    assert r.peaks[0].frequency_hz == pytest.approx(f, abs=0.5)
    assert r.peaks[0].velocity_rms_mm_s == pytest.approx(v_rms(10.0, f), rel=0.02)


def test_exact_bin_sine_is_near_exact() -> None:
    r = ok(analyze(sine(10.0, 160.0), FS))
    # 10 / (sqrt2 * 2pi * 160) * 1000 = 7.0338...; Hann spreads the tone over bins 159-161,
    # whose 1/omega differ: a bias of a few 1e-5 even on an exact bin.
    assert r.velocity_rms_mm_s == pytest.approx(7.033858, rel=1e-4)
    assert r.peaks == (Peak(pytest.approx(160.0, abs=0.01), pytest.approx(7.033858, rel=1e-4)),)  # type: ignore[arg-type]
    assert r.crest_factor == pytest.approx(math.sqrt(2), rel=1e-4)
    assert (r.samples, r.sample_rate_hz, r.band) == (8192, FS, (10.0, 1000.0))


@settings(max_examples=30, deadline=None)
@given(f=st.floats(12.0, 990.0), amp=st.floats(0.1, 100.0), phase=st.floats(0.0, 6.28))
def test_any_in_band_sine_within_two_percent(f: float, amp: float, phase: float) -> None:
    r = ok(analyze(sine(amp, f, phase=phase), FS))
    assert r.velocity_rms_mm_s == pytest.approx(v_rms(amp, f), rel=0.02)


def test_unit_g_scales_by_standard_gravity() -> None:
    r = ok(analyze(sine(1.0, 50.0), FS, "g"))
    ref = ok(analyze(sine(G_M_S2, 50.0), FS, "m/s2"))
    assert r.velocity_rms_mm_s == pytest.approx(ref.velocity_rms_mm_s, rel=1e-12)
    assert r.velocity_rms_mm_s == pytest.approx(v_rms(G_M_S2, 50.0), rel=1e-3)


def test_two_tones_both_peaks_found() -> None:
    x = sine(10.0, 60.0) + sine(20.0, 237.3, phase=0.4)
    r = ok(analyze(x, FS))
    by_freq = sorted(r.peaks[:2], key=lambda p: p.frequency_hz)
    assert by_freq[0].frequency_hz == pytest.approx(60.0, abs=0.5)
    assert by_freq[1].frequency_hz == pytest.approx(237.3, abs=0.5)
    assert by_freq[0].velocity_rms_mm_s == pytest.approx(v_rms(10.0, 60.0), rel=0.02)
    assert by_freq[1].velocity_rms_mm_s == pytest.approx(v_rms(20.0, 237.3), rel=0.02)
    # Largest first: the 60 Hz tone has more velocity though less acceleration.
    assert r.peaks[0].frequency_hz == pytest.approx(60.0, abs=0.5)
    assert r.velocity_rms_mm_s == pytest.approx(math.hypot(v_rms(10.0, 60.0), v_rms(20.0, 237.3)), rel=0.02)


def test_dc_and_out_of_band_tones_are_ignored() -> None:
    base = sine(10.0, 160.0)
    noisy = base + 5.0 + sine(4.0, 3.0) + sine(50.0, 2500.0)
    a, b = ok(analyze(base, FS)), ok(analyze(noisy, FS))
    assert b.velocity_rms_mm_s == pytest.approx(a.velocity_rms_mm_s, rel=0.01)
    assert b.acceleration_rms_m_s2 == pytest.approx(a.acceleration_rms_m_s2, rel=0.01)
    assert [p.frequency_hz for p in b.peaks] == pytest.approx([160.0], abs=0.5)


def test_impacts_raise_crest_factor() -> None:
    x = sine(1.0, 100.0)
    x[::819] += 40.0  # ten impacts a second, as a bearing defect would give
    r = ok(analyze(x, FS))
    assert r.crest_factor > 4.0
    assert ok(analyze(sine(1.0, 100.0), FS)).crest_factor < 1.5


def test_silent_frame_is_zero_not_nan() -> None:
    r = ok(analyze(np.full(8192, 3.0), FS))
    assert (r.velocity_rms_mm_s, r.acceleration_rms_m_s2, r.crest_factor, r.peaks) == (0.0, 0.0, 0.0, ())


def test_higher_sample_rate_and_longer_frame() -> None:
    r = ok(analyze(sine(10.0, 400.0, fs=25600.0, seconds=2.0), 25600.0))
    assert r.velocity_rms_mm_s == pytest.approx(v_rms(10.0, 400.0), rel=0.02)


@pytest.mark.parametrize(
    ("samples", "fs", "unit", "reason"),
    [
        (sine(1.0, 50.0)[:4000], FS, "m/s2", RejectReason.TOO_SHORT),  # < 1 s
        (np.zeros(200), 2000.0, "m/s2", RejectReason.LOW_SAMPLE_RATE),
        (np.zeros(255), 2560.0, "m/s2", RejectReason.TOO_SHORT),
        (np.zeros(4096), 2048.0, "m/s2", RejectReason.LOW_SAMPLE_RATE),  # < 2.56 kHz
        (np.zeros(8192), float("nan"), "m/s2", RejectReason.LOW_SAMPLE_RATE),
        (np.where(np.arange(8192) == 17, np.nan, 0.0), FS, "m/s2", RejectReason.NOT_FINITE),
        (np.where(np.arange(8192) == 5, np.inf, 0.0), FS, "g", RejectReason.NOT_FINITE),
        (np.zeros(8192), FS, "mm/s", RejectReason.BAD_UNIT),
        (np.zeros((2, 8192)), FS, "m/s2", RejectReason.BAD_SHAPE),
        (["a"] * 8192, FS, "m/s2", RejectReason.BAD_SHAPE),
    ],
)
def test_rejections_carry_a_reason(samples: object, fs: float, unit: str, reason: RejectReason) -> None:
    r = analyze(samples, fs, unit)  # type: ignore[arg-type]
    assert isinstance(r, VibrationRejection)
    assert r.reason is reason
    assert r.detail
    assert r.bad_reason == f"bad_payload:{reason.value}"


def test_nan_detail_counts_samples() -> None:
    x = np.zeros(8192)
    x[[1, 2, 3]] = np.nan
    r = analyze(x, FS)
    assert r == VibrationRejection(RejectReason.NOT_FINITE, "3 non-finite samples")


@pytest.mark.parametrize("band", [(0.0, 1000.0), (1000.0, 10.0), (10.0, math.inf)])
def test_bad_band_is_a_config_error(band: tuple[float, float]) -> None:
    with pytest.raises(BandError, match="fix the config"):
        analyze(np.zeros(8192), FS, band=band)


def test_narrow_band_excludes_tone() -> None:
    x = sine(10.0, 50.0) + sine(10.0, 400.0)
    r = ok(analyze(x, FS, band=(100.0, 1000.0)))
    assert r.velocity_rms_mm_s == pytest.approx(v_rms(10.0, 400.0), rel=0.02)


# --- ISO zones ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "foundation", "bounds"),
    [
        (2, "rigid", (1.4, 2.8, 4.5)),
        (2, "flexible", (2.3, 4.5, 7.1)),
        (1, "rigid", (2.3, 4.5, 7.1)),
        (1, "flexible", (3.5, 7.1, 11.0)),
    ],
)
def test_iso_table_and_zone_edges(group: int, foundation: str, bounds: tuple[float, float, float]) -> None:
    cfg = IsoCfg(group, foundation)  # type: ignore[arg-type]
    assert cfg.boundaries == bounds
    ab, bc, cd = bounds
    table = [
        (0.0, "A"),
        (ab - 0.01, "A"),
        (ab, "B"),
        (bc - 0.01, "B"),
        (bc, "C"),  # alert at B/C
        (cd - 0.01, "C"),
        (cd, "D"),  # trip at C/D
        (100.0, "D"),
    ]
    assert [(v, iso_zone(v, cfg)) for v, _ in table] == table


def test_iso_default_is_group2_rigid_and_overrides_apply() -> None:
    assert IsoCfg().boundaries == (1.4, 2.8, 4.5)
    cfg = IsoCfg(bc=3.0)
    assert cfg.boundaries == (1.4, 3.0, 4.5)
    assert iso_zone(2.9, cfg) == "B"


@pytest.mark.parametrize(
    "kwargs",
    [{"group": 3}, {"foundation": "soft"}, {"ab": 5.0}, {"cd": 2.0}, {"ab": -1.0}, {"cd": math.nan}],
)
def test_iso_cfg_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(IsoCfgError):
        IsoCfg(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("v", [-0.1, math.nan, math.inf])
def test_iso_zone_rejects_impossible_values(v: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        iso_zone(v, IsoCfg())


# --- baseline -------------------------------------------------------------------------


def test_baseline_learns_median_of_first_n_running_values() -> None:
    cfg = BaselineCfg(learn_count=5, change_ratio=1.25, min_running_mm_s=0.2)
    b = Baseline()
    for v in (1.0, 0.05, 3.0, 1.2, math.nan, 0.9, 1.1):  # 0.05 (stopped) and NaN are not learned
        assert b.value is None
        assert not b.exceeded(100.0, cfg)
        b = b.feed(v, cfg)
    assert b == Baseline(value=1.1)
    assert b.feed(50.0, cfg) is b  # learned: frozen
    assert not b.exceeded(1.37, cfg)
    assert b.exceeded(1.375, cfg)  # 1.1 x 1.25


def test_baseline_restore_and_round_trip() -> None:
    cfg = BaselineCfg()
    b = Baseline.restored(2.0)
    assert b.exceeded(2.5, cfg) and not b.exceeded(2.49, cfg)
    assert Baseline.from_dict(b.to_dict()) == b
    partial = Baseline(learning=(1.0, 2.0))
    assert partial.to_dict() == {"value": None, "learning": [1.0, 2.0]}
    assert Baseline.from_dict(partial.to_dict()) == partial


@pytest.mark.parametrize(
    "d",
    [
        {"value": "x"},
        {"value": 0.0},
        {"value": math.nan},
        {"value": True},
        {"learning": "abc"},
        {"learning": [1.0, -2.0]},
        {"learning": [math.inf]},
    ],
)
def test_baseline_from_dict_rejects_bad_data(d: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="baseline"):
        Baseline.from_dict(d)


@pytest.mark.parametrize("kwargs", [{"learn_count": 0}, {"change_ratio": 1.0}, {"min_running_mm_s": -1.0}])
def test_baseline_cfg_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="baseline"):
        BaselineCfg(**kwargs)  # type: ignore[arg-type]

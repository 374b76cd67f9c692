"""Table and property tests of rules.profiles: documented defaults, units, overrides, order checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.config import GAS_QUANTITIES, Basis, Direction, Limit, Quantity, Severity
from rules.profiles import (
    GB,
    OSHA,
    PROFILES,
    UNITS,
    Profile,
    ProfileError,
    Resolved,
    mg_m3_to_ppm,
    ppm_to_mg_m3,
    resolve,
)

L, H = Direction.LOW, Direction.HIGH
W, A, E = Severity.WARNING, Severity.ALARM, Severity.EVACUATE
INS, STEL, TWA = Basis.INSTANT, Basis.STEL, Basis.TWA

# Every documented level of both profiles (DOMAIN.md table), in the profile's own unit:
# profile, quantity, unit, name, direction, value, latching, severity, basis
LEVELS = [
    ("osha", "o2", "%vol", "low", L, 19.5, True, E, INS),
    ("osha", "o2", "%vol", "low_low", L, 18.0, True, E, INS),
    ("osha", "o2", "%vol", "high", H, 23.5, True, A, INS),
    ("osha", "lel", "%LEL", "alarm1", H, 10.0, True, A, INS),
    ("osha", "lel", "%LEL", "alarm2", H, 20.0, True, E, INS),
    ("osha", "h2s", "ppm", "alarm1", H, 5.0, False, A, INS),
    ("osha", "h2s", "ppm", "alarm2", H, 10.0, True, E, INS),
    ("osha", "h2s", "ppm", "stel", H, 5.0, True, A, STEL),
    ("osha", "h2s", "ppm", "twa", H, 1.0, True, A, TWA),
    ("osha", "co", "ppm", "alarm1", H, 25.0, False, A, INS),
    ("osha", "co", "ppm", "alarm2", H, 50.0, True, A, INS),
    ("osha", "co", "ppm", "evacuate", H, 200.0, True, E, INS),
    ("gb", "o2", "%vol", "low", L, 19.5, True, E, INS),
    ("gb", "o2", "%vol", "low_low", L, 18.0, True, E, INS),
    ("gb", "o2", "%vol", "high", H, 23.5, True, A, INS),
    ("gb", "lel", "%LEL", "alarm1", H, 25.0, True, A, INS),
    ("gb", "lel", "%LEL", "alarm2", H, 50.0, True, E, INS),
    ("gb", "h2s", "mg/m3", "alarm1", H, 10.0, False, A, INS),
    ("gb", "h2s", "mg/m3", "alarm2", H, 20.0, True, E, INS),
    ("gb", "co", "mg/m3", "alarm1", H, 20.0, False, A, INS),
    ("gb", "co", "mg/m3", "alarm2", H, 40.0, True, E, INS),
]


def _limit(r: Resolved, name: str) -> Limit:
    (lim,) = [lim for lim in r.limits if lim.name == name]
    return lim


@pytest.mark.parametrize(("profile", "q", "unit", "name", "direction", "value", "latching", "sev", "basis"), LEVELS)
def test_documented_levels(
    profile: str,
    q: str,
    unit: str,
    name: str,
    direction: Direction,
    value: float,
    latching: bool,
    sev: Severity,
    basis: Basis,
) -> None:
    lim = _limit(resolve(profile, q, unit), name)
    assert (lim.direction, lim.value, lim.latching, lim.severity, lim.basis) == (
        direction,
        value,
        latching,
        sev,
        basis,
    )
    assert lim.deadband >= 0


def test_table_covers_every_profile_level() -> None:
    """A level added to a profile without a row above is a level nobody checked."""
    in_profiles = {(p, q, lim.name) for p, prof in PROFILES.items() for q, qp in prof.items() for lim in qp.limits}
    assert in_profiles == {(p, q, n) for p, q, _, n, *_ in LEVELS}


def test_o2_deadband_is_domain_value() -> None:
    for profile in ("osha", "gb"):
        assert {lim.deadband for lim in resolve(profile, "o2", "%vol").limits} == {0.2}


@pytest.mark.parametrize(
    ("profile", "confined", "hot", "over"),
    [("osha", False, 10.0, 100.0), ("osha", True, 1.0, 100.0), ("gb", False, 10.0, 100.0), ("gb", True, 1.0, 100.0)],
)
def test_lel_hot_work_and_over_range(profile: str, confined: bool, hot: float, over: float) -> None:
    r = resolve(profile, "lel", "%LEL", confined=confined)
    assert (r.hot_work_max, r.over_range) == (hot, over)


# --- units: mg/m3 <-> ppm at 25 degC, 1 atm (24.45 L/mol) ---


@pytest.mark.parametrize(
    ("q", "mg", "ppm"),
    [("h2s", 10.0, 7.17), ("h2s", 20.0, 14.35), ("co", 20.0, 17.46), ("co", 40.0, 34.92)],
)
def test_mg_m3_to_ppm_documented(q: str, mg: float, ppm: float) -> None:
    assert round(mg_m3_to_ppm(q, mg), 2) == ppm


def test_ppm_to_mg_m3_osha_in_mg() -> None:
    # 5 ppm H2S = 6.97 mg/m3; 25 ppm CO = 28.64 mg/m3
    assert round(ppm_to_mg_m3("h2s", 5.0), 2) == 6.97
    assert round(ppm_to_mg_m3("co", 25.0), 2) == 28.64


@pytest.mark.parametrize(
    ("profile", "q", "unit", "expect"),
    [
        ("gb", "h2s", "ppm", {"alarm1": (7.174, 0.717), "alarm2": (14.349, 0.717)}),
        ("gb", "co", "ppm", {"alarm1": (17.458, 4.365), "alarm2": (34.916, 4.365)}),
        (
            "osha",
            "h2s",
            "mg/m3",
            {"alarm1": (6.969, 1.394), "alarm2": (13.939, 1.394), "stel": (6.969, 0.697), "twa": (1.394, 0.139)},
        ),
        ("osha", "co", "mg/m3", {"alarm1": (28.64, 5.728), "alarm2": (57.280, 5.728), "evacuate": (229.121, 11.456)}),
    ],
)
def test_resolve_converts_values_and_deadbands(
    profile: str, q: str, unit: str, expect: dict[str, tuple[float, float]]
) -> None:
    got = {lim.name: (round(lim.value, 3), round(lim.deadband, 3)) for lim in resolve(profile, q, unit).limits}
    assert got == expect


def test_resolve_in_profile_unit_is_exact() -> None:
    assert _limit(resolve("gb", "h2s", "mg/m3"), "alarm1").value == 10.0
    assert _limit(resolve("osha", "co", "ppm"), "alarm1").value == 25.0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("osha", "h2s", "ppb"), ["'ppb'", "h2s", "ppm", "mg/m3"]),
        (("osha", "o2", "ppm"), ["'ppm'", "o2", "%vol"]),
        (("gb", "lel", "%vol"), ["'%vol'", "lel", "%LEL"]),
        (("gb", "co", "mg/l"), ["'mg/l'", "co"]),
        (("nfpa", "o2", "%vol"), ["'nfpa'", "gb", "osha"]),
    ],
)
def test_unknown_unit_or_profile_rejected(args: tuple[str, str, str], words: list[str]) -> None:
    with pytest.raises(ProfileError) as exc:
        resolve(*args)
    for w in words:
        assert w in str(exc.value)


def test_quantity_without_profile_limits() -> None:
    assert resolve("osha", "temperature", "degC") == Resolved((), None, None)
    with pytest.raises(ProfileError, match="no limits for 'temperature'"):
        resolve("osha", "temperature", "degC", overrides={"alarm1": 80.0})


# --- overrides ---


def test_override_applies_in_signal_unit_and_keeps_the_rest() -> None:
    r = resolve("gb", "h2s", "ppm", overrides={"alarm1": 6.0})
    assert _limit(r, "alarm1").value == 6.0
    assert round(_limit(r, "alarm1").deadband, 3) == 0.717  # deadband stays the converted profile one
    assert round(_limit(r, "alarm2").value, 3) == 14.349


def test_override_hot_work_max() -> None:
    assert resolve("osha", "lel", "%LEL", confined=True, overrides={"hot_work_max": 0.5}).hot_work_max == 0.5


def test_override_unknown_name_rejected_naming_both_sides() -> None:
    with pytest.raises(ProfileError) as exc:
        resolve("osha", "co", "ppm", overrides={"alarm3": 300.0})
    msg = str(exc.value)
    assert "alarm3" in msg and "alarm1" in msg and "evacuate" in msg


@pytest.mark.parametrize(
    ("profile", "q", "unit", "overrides", "names"),
    [
        ("osha", "lel", "%LEL", {"alarm1": 25.0}, ("alarm1", "alarm2")),
        ("osha", "lel", "%LEL", {"alarm2": 10.0}, ("alarm1", "alarm2")),  # equal is out of order too
        ("osha", "co", "ppm", {"evacuate": 40.0}, ("alarm2", "evacuate")),
        ("osha", "co", "ppm", {"alarm2": 25.0}, ("alarm1", "alarm2")),
        ("osha", "h2s", "ppm", {"alarm1": 12.0}, ("alarm1", "alarm2")),
        ("osha", "o2", "%vol", {"low_low": 19.6}, ("low", "low_low")),
        ("gb", "o2", "%vol", {"low": 17.0}, ("low", "low_low")),
        ("gb", "h2s", "ppm", {"alarm2": 7.0}, ("alarm1", "alarm2")),
        # a low level at or above a high level: the message must say which pair
        ("osha", "o2", "%vol", {"high": 19.0}, ("low", "high")),
        ("gb", "o2", "%vol", {"low": 23.5}, ("low", "high")),
    ],
)
def test_out_of_order_rejected_naming_levels(
    profile: str, q: str, unit: str, overrides: dict[str, float], names: tuple[str, ...]
) -> None:
    with pytest.raises(ProfileError) as exc:
        resolve(profile, q, unit, overrides=overrides)
    msg = str(exc.value)
    assert "out of order" in msg
    for n in names:
        assert f"{n}=" in msg, msg


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["alarm1", "alarm2", "hot_work_max"])
def test_non_finite_override_rejected(bad: float, name: str) -> None:
    """NaN compares False both ways: a NaN limit would pass the order check and never trip."""
    with pytest.raises(ProfileError) as exc:
        resolve("osha", "lel", "%LEL", overrides={name: bad})
    assert name in str(exc.value)


def test_profiles_are_in_order_as_shipped() -> None:
    for profile, prof in PROFILES.items():
        for q, qp in prof.items():
            resolve(profile, q, qp.unit)  # raises if a shipped profile were out of order


def test_profile_tables_are_distinct_objects() -> None:
    assert PROFILES == {"osha": OSHA, "gb": GB}


def test_every_profile_and_quantity_has_its_table() -> None:
    """The config accepts exactly the enums' values, so each needs its entry here."""
    assert set(PROFILES) == set(Profile)
    assert set(UNITS) == set(Quantity)
    for prof in PROFILES.values():
        assert set(prof) == GAS_QUANTITIES


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"use one of \['gb', 'osha'\]$"):
        resolve("iso", "o2", "%vol")


# --- properties ---

_QTY = st.sampled_from(["h2s", "co"])
_VAL = st.floats(min_value=0.0, max_value=1e5, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(q=_QTY, v=_VAL)
def test_conversion_round_trips(q: str, v: float) -> None:
    assert math.isclose(mg_m3_to_ppm(q, ppm_to_mg_m3(q, v)), v, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(q=_QTY, profile=st.sampled_from(["osha", "gb"]))
def test_resolve_in_either_unit_trips_at_the_same_physical_level(q: str, profile: str) -> None:
    ppm = {lim.name: lim.value for lim in resolve(profile, q, "ppm").limits}
    mg = {lim.name: lim.value for lim in resolve(profile, q, "mg/m3").limits}
    assert ppm.keys() == mg.keys()
    for n in ppm:
        assert math.isclose(ppm_to_mg_m3(q, ppm[n]), mg[n], rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(a1=st.floats(0.0, 200.0), a2=st.floats(0.0, 200.0))
def test_lel_override_accepted_iff_in_order(a1: float, a2: float) -> None:
    try:
        r = resolve("osha", "lel", "%LEL", overrides={"alarm1": a1, "alarm2": a2})
    except ProfileError as exc:
        assert a1 >= a2
        assert "alarm1=" in str(exc) and "alarm2=" in str(exc)
    else:
        assert a1 < a2
        assert (_limit(r, "alarm1").value, _limit(r, "alarm2").value) == (a1, a2)


# ---- lower plausibility limit (issue 15.4) -----------------------------------------------
# profile, quantity, unit, the floor in that unit: NE43's -1.25 % of the common span, rounded
# away from zero (rules.profiles.UNDER_RANGE_NOTE); GB's toxic floors are the same ppm in mg/m3.
FLOORS = [
    ("osha", "o2", "%vol", -0.5),
    ("osha", "lel", "%LEL", -2.0),
    ("osha", "h2s", "ppm", -2.0),
    ("osha", "co", "ppm", -10.0),
    ("gb", "o2", "%vol", -0.5),
    ("gb", "lel", "%LEL", -2.0),
    ("gb", "h2s", "mg/m3", -2.79),
    ("gb", "co", "mg/m3", -11.46),
    ("osha", "h2s", "mg/m3", round(-ppm_to_mg_m3("h2s", 2.0), 6)),  # converted into the signal's unit
]


@pytest.mark.parametrize(("profile", "quantity", "unit", "floor"), FLOORS)
def test_every_gas_has_a_documented_lower_plausibility_limit(
    profile: str, quantity: str, unit: str, floor: float
) -> None:
    assert resolve(profile, quantity, unit).under_range == pytest.approx(floor, abs=0.01)


def test_under_range_override_and_its_check() -> None:
    assert resolve("osha", "lel", "%LEL", overrides={"under_range": -5.0}).under_range == -5.0
    with pytest.raises(ProfileError, match=r"under_range=19.6 must be below every alarm level.*low_low=18"):
        resolve("osha", "o2", "%vol", overrides={"under_range": 19.6})
    assert resolve("osha", "temperature", "degC").under_range is None  # no gas, no floor

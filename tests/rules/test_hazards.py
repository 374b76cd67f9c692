"""rules.hazards: de-duplication and escalation of repeated hazards (pure; tables and properties)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.actions import HazardRecord, Note, SetOutput
from rules.hazards import DAY_S, HazardCfg, HazardState, filter_actions, from_json, step, to_json

CFG = HazardCfg(dedup_s=300, recur_n=3, recur_days=7)
O2 = HazardRecord("tank-7", "gas", "general", "o2 low in tank-7", {"value": 19.1})
LEL = HazardRecord("tank-7", "gas", "general", "lel alarm_1 in tank-7")
EVAC = HazardRecord("tank-7", "confined_space", "major", "evacuation of tank-7")
PUMP = HazardRecord("pump-room", "mechanical", "general", "P-1: vibration alert")


def run(events: list[tuple[HazardRecord, float]], cfg: HazardCfg = CFG) -> tuple[HazardState, list[Any]]:
    s, out = HazardState(), []
    for h, t in events:
        s, r = step(s, h, t, cfg)
        out.append(r)
    return s, out


MAJOR = replace(O2, level="major", recurring=True)


@pytest.mark.parametrize(
    ("events", "want"),
    [
        pytest.param([(O2, 0)], [O2], id="first-is-raised-unchanged"),
        pytest.param([(O2, 0), (O2, 299.9)], [O2, None], id="repeat-inside-window-suppressed"),
        pytest.param([(O2, 0), (O2, 300)], [O2, O2], id="window-boundary-raises"),
        pytest.param([(O2, 0), (O2, 200), (O2, 400)], [O2, None, O2], id="window-runs-from-last-raised"),
        pytest.param([(O2, 0), (LEL, 1)], [O2, LEL], id="other-title-not-suppressed"),
        pytest.param(
            [(O2, 0), (replace(O2, category="fire"), 1)],
            [O2, replace(O2, category="fire")],
            id="other-category-not-suppressed",
        ),
        pytest.param(
            [(O2, 0), (replace(O2, zone="bay-1"), 1)], [O2, replace(O2, zone="bay-1")], id="other-zone-not-suppressed"
        ),
        pytest.param([(O2, 0), (O2, 400), (O2, 800)], [O2, O2, MAJOR], id="third-in-a-week-escalates"),
        pytest.param([(O2, 0), (LEL, 1), (O2, 400)], [O2, LEL, MAJOR], id="same-zone-category-other-title-counts"),
        pytest.param(
            [(O2, 0), (O2, 100), (O2, 200), (O2, 400)], [O2, None, None, O2], id="suppressed-ones-do-not-count"
        ),
        pytest.param([(O2, 0), (O2, 400), (O2, 7 * DAY_S + 0.5)], [O2, O2, O2], id="oldest-left-the-week"),
        pytest.param([(O2, 0), (O2, 400), (O2, 7 * DAY_S)], [O2, O2, MAJOR], id="week-boundary-inclusive"),
        pytest.param([(O2, 0), (EVAC, 1), (PUMP, 2)], [O2, EVAC, PUMP], id="three-categories-no-escalation"),
        pytest.param([(O2, 1000), (O2, 900)], [O2, O2], id="clock-backwards-never-suppresses"),
    ],
)
def test_table(events: list[tuple[HazardRecord, float]], want: list[Any]) -> None:
    assert run(events)[1] == want


def test_counters_and_state_are_whole() -> None:
    s, out = run([(O2, 0), (O2, 1), (O2, 400), (O2, 800)])
    assert out == [O2, None, O2, MAJOR]
    assert s == HazardState(
        last={("tank-7", "gas", "o2 low in tank-7"): 800},
        recent={("tank-7", "gas"): (0, 400, 800)},
        raised=3,
        suppressed=1,
        escalated=1,
    )


def test_already_major_recurring_is_not_counted_as_escalated() -> None:
    s, out = run([(MAJOR, 0), (MAJOR, 400), (MAJOR, 800)])
    assert out == [MAJOR] * 3 and s.escalated == 0


def test_recur_n_one_escalates_everything_and_dedup_zero_suppresses_nothing() -> None:
    cfg = HazardCfg(dedup_s=0, recur_n=1)
    assert run([(O2, 0), (O2, 0)], cfg)[1] == [MAJOR, MAJOR]


@pytest.mark.parametrize("bad", [{"dedup_s": -1}, {"recur_n": 0}, {"recur_days": 0}, {"max_keys": 0}])
def test_bad_config_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="HazardCfg"):
        HazardCfg(**bad)  # type: ignore[arg-type]


def test_filter_actions_keeps_order_and_other_actions() -> None:
    out = SetOutput("relay-1", False, "o2 low")
    note = Note("x")
    s, acts = filter_actions(HazardState(), (out, O2, note, O2, LEL), 0.0, CFG)
    assert acts == (out, O2, note, LEL) and s.suppressed == 1
    s2, acts2 = filter_actions(s, (out, note), 1.0, CFG)
    assert s2 is s and acts2 == (out, note)


def test_eviction_bounds_memory_and_lets_duplicates_through() -> None:
    cfg = HazardCfg(dedup_s=300, recur_n=3, max_keys=2)
    a, b, c = (replace(O2, title=f"t{i}", zone=f"z{i}") for i in range(3))
    s, out = run([(a, 0), (b, 1), (c, 2), (a, 3)], cfg)
    assert out == [a, b, c, a]  # a was evicted (the oldest), so its repeat is reported again
    assert len(s.last) <= 2 and len(s.recent) <= 2


def test_json_round_trip() -> None:
    s, _ = run([(O2, 0), (O2, 1), (LEL, 400), (EVAC, 500)])
    doc = json.loads(json.dumps(to_json(s)))
    assert from_json(doc, CFG) == s
    small = from_json(doc, HazardCfg(recur_n=1, max_keys=1))
    assert len(small.last) == 1 and all(len(ts) <= 1 for ts in small.recent.values())
    with pytest.raises(ValueError, match="hazard state"):
        from_json({"last": [[1, 2]], "recent": [], "counts": [0, 0, 0]})


# --- properties --------------------------------------------------------------------------

ZONES, CATS, TITLES = ["z1", "z2"], ["gas", "fire", "mechanical"], ["a", "b"]
EVENT = st.tuples(
    st.sampled_from(ZONES), st.sampled_from(CATS), st.sampled_from(TITLES), st.floats(0, 3 * DAY_S, allow_nan=False)
)
CFGS = st.builds(
    HazardCfg,
    dedup_s=st.sampled_from([0.0, 60.0, 300.0, DAY_S]),
    recur_n=st.integers(1, 4),
    recur_days=st.sampled_from([0.01, 1.0, 7.0]),
    max_keys=st.integers(1, 20),
)


def _feed(cfg: HazardCfg, gaps: list[tuple[str, str, str, float]]) -> list[tuple[HazardRecord, float, Any]]:
    """Step through events at non-decreasing times (each gap added to the last time)."""
    s, now, seen = HazardState(), 0.0, []
    for zone, cat, title, gap in gaps:
        now += gap / 50
        h = HazardRecord(zone, cat, "general", title)
        s, r = step(s, h, now, cfg)
        seen.append((h, now, r))
        assert len(s.last) <= cfg.max_keys and len(s.recent) <= cfg.max_keys
        assert all(1 <= len(ts) <= cfg.recur_n for ts in s.recent.values())
    return seen


@settings(max_examples=300, deadline=None)
@given(cfg=CFGS, gaps=st.lists(EVENT, max_size=60))
def test_bounded_and_never_suppresses_without_an_identical_recent_raise(
    cfg: HazardCfg, gaps: list[tuple[str, str, str, float]]
) -> None:
    raised: list[tuple[HazardRecord, float]] = []
    for h, now, r in _feed(cfg, gaps):
        if r is None:  # some identical (zone, category, title) was raised inside the window
            assert any(
                p.zone == h.zone and p.category == h.category and p.title == h.title and 0 <= now - t < cfg.dedup_s
                for p, t in raised
            )
        else:
            assert (r.zone, r.category, r.title, r.evidence) == (h.zone, h.category, h.title, h.evidence)
            if r.recurring:  # sound even when eviction forgot some history
                n = sum(1 for p, t in raised if (p.zone, p.category) == (h.zone, h.category) and now - t <= cfg.recur_s)
                assert n + 1 >= cfg.recur_n and r.level == "major"
            raised.append((h, now))


@settings(max_examples=300, deadline=None)
@given(cfg=CFGS.map(lambda c: replace(c, max_keys=64)), gaps=st.lists(EVENT, max_size=60))
def test_exactly_the_reference_model_when_nothing_is_evicted(
    cfg: HazardCfg, gaps: list[tuple[str, str, str, float]]
) -> None:
    """An unbounded, obviously-correct model agrees step for step (64 keys > the 12 possible)."""
    history: list[tuple[str, str, str, float]] = []
    for h, now, r in _feed(cfg, gaps):
        last = [t for z, c, ti, t in history if (z, c, ti) == (h.zone, h.category, h.title)]
        if last and now - last[-1] < cfg.dedup_s:
            assert r is None
            continue
        n = 1 + sum(1 for z, c, _, t in history if (z, c) == (h.zone, h.category) and now - t <= cfg.recur_s)
        want = replace(h, level="major", recurring=True) if n >= cfg.recur_n else h
        assert r == want
        history.append((h.zone, h.category, h.title, now))

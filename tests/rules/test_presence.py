"""The pure presence rule: tables with injected times, and Hypothesis invariants."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.events import Event, Quality, Reading, ReceiverStatus, Sighting, Tick
from rules.presence import (
    Link,
    Occupants,
    PresenceCfg,
    PresenceChange,
    PresenceState,
    Track,
    last_seen,
    occupants,
    present_in,
    step,
    strengths,
    zone_of,
)

CFG = PresenceCfg(receivers={"rA": "A", "rA2": "A", "rB": "B", "rC": "C"})
Step = tuple[float, Event]


def run(
    events: Iterable[Step], cfg: PresenceCfg = CFG, state: PresenceState | None = None
) -> tuple[PresenceState, list[PresenceChange]]:
    s = state or PresenceState()
    out: list[PresenceChange] = []
    for now, ev in events:
        s, ch = step(s, ev, now, cfg)
        out.extend(ch)
    return s, out


def see(t: float, receiver: str, rssi: float, badge: str = "b1") -> Step:
    return t, Sighting(badge=badge, receiver=receiver, rssi=rssi, at=t)


def tick(t: float) -> Step:
    return t, Tick()


def ch(badge: str, old: str | None, new: str | None, at: float) -> PresenceChange:
    return PresenceChange(badge, old, new, at)


def test_first_sighting_sets_zone_at_once() -> None:
    assert step(PresenceState(), Sighting("b1", "rA", -60.0, 5.0), 5.0, CFG) == (
        PresenceState(tracks={"b1": Track(last_seen=5.0, zone="A", links={"rA": Link(-60.0, 5.0)})}),
        (ch("b1", None, "A", 5.0),),
    )


def test_rssi_is_smoothed_per_badge_and_receiver() -> None:
    s, _ = run([see(0, "rA", -60), see(1, "rA", -70), see(1, "rB", -90), see(2, "rA", -80, badge="b2")])
    assert s.tracks["b1"].links == {"rA": Link(-63.0, 1.0), "rB": Link(-90.0, 1.0)}
    assert s.tracks["b2"].links == {"rA": Link(-80.0, 2.0)}
    assert strengths(s, "b1", 1.0, CFG) == {"A": -63.0, "B": -90.0}


def _walk(a: float, b: float, until: float, extra: Iterable[Step] = ()) -> list[Step]:
    """Badge in A at t=0; from t=1 every second A hears `a` and B hears `b` dBm."""
    evs = [see(0, "rA", a)]
    t = 1.0
    while t <= until:
        evs += [see(t, "rA", a), see(t, "rB", b)]
        t += 1.0
    return sorted([*evs, *extra], key=lambda e: e[0])


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(_walk(-60, -50, 6), [ch("b1", None, "A", 0), ch("b1", "A", "B", 4.0)], id="10dB-held-3s"),
        pytest.param(_walk(-60, -54, 6), [ch("b1", None, "A", 0), ch("b1", "A", "B", 4.0)], id="exactly-6dB"),
        pytest.param(_walk(-60, -54.1, 20), [ch("b1", None, "A", 0)], id="5.9dB-never"),
        pytest.param(_walk(-60, -50, 3.5), [ch("b1", None, "A", 0)], id="held-only-2s"),
        pytest.param(
            # B qualifies at t=1, a deep fade of B at t=2.5 breaks it; re-qualifies at t=3.
            [
                *_walk(-60, -50, 1),
                see(2, "rB", -50),
                see(2.5, "rB", -90),
                see(3, "rB", -30),
                see(3, "rA", -60),
                see(5, "rB", -40),
                see(5.9, "rB", -40),
                see(6, "rB", -40),
            ],
            [ch("b1", None, "A", 0), ch("b1", "A", "B", 6.0)],
            id="broken-hold-restarts",
        ),
        pytest.param(
            [*_walk(-60, -50, 1), tick(2), tick(3), tick(3.99), tick(4)],
            [ch("b1", None, "A", 0), ch("b1", "A", "B", 4.0)],
            id="hold-completes-on-tick",
        ),
        pytest.param(
            [see(0, "rA", -80), see(0.5, "rA2", -60), see(1, "rB", -70)],
            [ch("b1", None, "A", 0)],
            id="zone-strength-is-its-strongest-receiver",
        ),
    ],
)
def test_zone_switch_hysteresis(events: list[Step], expected: list[PresenceChange]) -> None:
    assert run(events)[1] == expected


def test_silence_makes_badge_unknown() -> None:
    s, changes = run([see(0, "rA", -60), tick(5), tick(9.9)])
    assert (changes, zone_of(s, "b1"), present_in(s, "A", 9.9, CFG)) == ([ch("b1", None, "A", 0)], "A", {"b1"})
    # Between ticks the query is already safe: 10 s of silence is not presence.
    assert present_in(s, "A", 10.0, CFG) == frozenset()
    s, changes = step(s, Tick(), 10.0, CFG)
    assert (changes, zone_of(s, "b1"), last_seen(s, "b1")) == ((ch("b1", "A", None, 10.0),), None, 0.0)
    # The next sighting locates it again at once.
    assert step(s, Sighting("b1", "rB", -70, 30.0), 30.0, CFG)[1] == (ch("b1", None, "B", 30.0),)


def test_own_zone_silent_other_zone_hears_goes_through_unknown() -> None:
    # A stops hearing the badge; B hears it weakly (never 6 dB stronger than A's last EMA).
    evs = [see(0, "rA", -50), *[see(t, "rB", -90) for t in range(1, 12)]]
    assert run(evs)[1] == [ch("b1", None, "A", 0), ch("b1", "A", None, 10), ch("b1", None, "B", 10)]


def test_receiver_down_makes_every_badge_it_heard_unknown_until_fresh_sighting() -> None:
    s, _ = run([see(0, "rA", -60, "b1"), see(0, "rB", -80, "b1"), see(0, "rA", -70, "b2"), see(0, "rB", -60, "b3")])
    s, changes = step(s, ReceiverStatus("rA", up=False, reason="adapter_removed"), 1.0, CFG)
    assert changes == (ch("b1", "A", None, 1.0), ch("b2", "A", None, 1.0))
    assert (zone_of(s, "b1"), zone_of(s, "b2"), zone_of(s, "b3"), s.down) == (None, None, "B", {"rA"})
    assert "rA" not in s.tracks["b1"].links
    s, changes = run([tick(2), see(3, "rA", -40, "b2")], state=s)  # ticks never re-locate; rA is ignored
    assert (changes, zone_of(s, "b1"), zone_of(s, "b2")) == ([], None, None)
    s, changes = run([see(4, "rB", -85, "b1")], state=s)  # fresh sighting from an up receiver
    assert changes == [ch("b1", None, "B", 4)]
    s, changes = run([(5, ReceiverStatus("rA", up=True)), see(6, "rA", -40, "b2")], state=s)
    assert (changes, s.down) == ([ch("b2", None, "A", 6)], frozenset())


def test_occupants_resolve_people_and_flag_unknown_badges() -> None:
    s, _ = run([see(0, "rA", -60, "b1"), see(0, "rA", -60, "b2"), see(0, "rA", -60, "spare-of-p1"), see(0, "rB", -60)])
    people = {"b1": "p1", "spare-of-p1": "p1", "b9": "p9"}
    assert occupants(s, "A", 1.0, CFG, people) == Occupants(frozenset({"p1"}), frozenset({"b2"}))
    assert occupants(s, "A", 10.0, CFG, people) == Occupants(frozenset(), frozenset())


@pytest.mark.parametrize(
    "event",
    [
        Sighting("b1", "esp-unknown", -40, 1.0),
        Sighting("b1", "rA", math.nan, 1.0),
        ReceiverStatus("esp-unknown", up=False),
        ReceiverStatus("rA", up=True),
        Reading("gas-1.o2", 20.9, 1.0, Quality.GOOD),
    ],
    ids=["unconfigured-receiver", "nan-rssi", "unconfigured-down", "up-while-up", "other-event"],
)
def test_ignored_events_leave_state_unchanged(event: Event) -> None:
    s, _ = run([see(0, "rA", -60)])
    assert step(s, event, 1.0, CFG) == (s, ())


def test_unknown_badges_are_forgotten_and_capped() -> None:
    cfg = PresenceCfg(receivers={"rA": "A"}, forget_after_s=60.0, max_badges=2)
    s, changes = run([see(0, "rA", -60, "b1"), see(1, "rA", -60, "b2"), see(2, "rA", -60, "b3")], cfg)
    # At the cap the stalest badge is evicted, and made UNKNOWN on the way out.
    assert changes[-2:] == [ch("b1", "A", None, 2), ch("b3", None, "A", 2)]
    assert set(s.tracks) == {"b2", "b3"}
    s, _ = run([tick(20), tick(60.5)], cfg, s)
    assert set(s.tracks) == {"b2", "b3"}  # UNKNOWN but remembered (last_seen)
    s, _ = run([tick(61.5)], cfg, s)
    assert (set(s.tracks), last_seen(s, "b2")) == ({"b3"}, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"switch_db": -1.0}, "switch_db"),
        ({"absent_after_s": 0.0}, "absent_after_s"),
        ({"forget_after_s": 5.0}, "forget_after_s"),
        ({"max_badges": 0}, "max_badges"),
        ({"receivers": {"rA": ""}}, "receivers"),
    ],
)
def test_cfg_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"receivers": {"rA": "A"}, **kwargs}
    with pytest.raises(ValueError, match=message):
        PresenceCfg(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- properties

BADGES = ("b0", "b1", "b2")
RECEIVERS = ("rA", "rA2", "rB", "rC", "esp-unconfigured")


@st.composite
def scripts(draw: st.DrawFn) -> list[Step]:
    t = 0.0
    out: list[Step] = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 11.0]))
        kind = draw(st.sampled_from(["see", "see", "see", "see", "tick", "tick", "status"]))
        if kind == "see":
            rssi = float(draw(st.integers(-100, -30)))
            lag = draw(st.sampled_from([0.0, 0.0, 0.5, 12.0]))  # queued / delayed sightings too
            out.append((t, Sighting(draw(st.sampled_from(BADGES)), draw(st.sampled_from(RECEIVERS)), rssi, t - lag)))
        elif kind == "tick":
            out.append((t, Tick()))
        else:
            out.append((t, ReceiverStatus(draw(st.sampled_from(RECEIVERS)), up=draw(st.booleans()))))
    return out


def _check_invariants(
    pre: PresenceState,
    ev: Event,
    now: float,
    post: PresenceState,
    changes: tuple[PresenceChange, ...],
    cfg: PresenceCfg,
) -> None:
    # Bounded, and only up, configured receivers are remembered.
    assert len(post.tracks) <= cfg.max_badges
    for t in post.tracks.values():
        assert all(r in cfg.receivers and r not in post.down for r in t.links)
    # Nobody is present in a zone more than absent_after_s after an up receiver of it heard them.
    for zone in set(cfg.receivers.values()):
        for b in present_in(post, zone, now, cfg):
            seen = last_seen(post, b)
            assert seen is not None and now - seen < cfg.absent_after_s
            assert any(
                cfg.receivers[r] == zone and now - lk.at < cfg.absent_after_s for r, lk in post.tracks[b].links.items()
            )
    if isinstance(ev, Tick):
        for b, t in post.tracks.items():
            if t.zone is not None:
                assert b in present_in(post, t.zone, now, cfg)
    evaluated: set[str] = set(post.tracks) if isinstance(ev, Tick) else set()
    if isinstance(ev, Sighting) and ev.receiver in cfg.receivers and ev.receiver not in pre.down:
        evaluated = {ev.badge}
    for b in evaluated & set(post.tracks):
        t = post.tracks[b]
        if t.candidate is not None:  # a candidate is only ever held while >= switch_db stronger
            s = strengths(post, b, now, cfg)
            assert t.zone is not None and s[t.candidate] - s[t.zone] >= cfg.switch_db
    # A switch between zones needs >= switch_db, held for >= switch_hold_s.
    for c in changes:
        if c.old_zone is not None and c.new_zone is not None:
            s = strengths(post, c.badge, now, cfg)
            assert s[c.new_zone] - s[c.old_zone] >= cfg.switch_db
            before = pre.tracks[c.badge]
            assert before.candidate == c.new_zone and now - before.candidate_since >= cfg.switch_hold_s
    # A receiver down leaves no badge located by it.
    if isinstance(ev, ReceiverStatus) and not ev.up and ev.receiver in cfg.receivers:
        assert ev.receiver in post.down
        for b, t in pre.tracks.items():
            if ev.receiver in t.links:
                assert zone_of(post, b) is None
    # Changes tell the truth about the state.
    for b in {c.badge for c in changes}:
        mine = [c for c in changes if c.badge == b]
        assert mine[0].old_zone == zone_of(pre, b)
        assert mine[-1].new_zone == zone_of(post, b)
        assert all(x.new_zone == y.old_zone for x, y in itertools.pairwise(mine))
        assert all(c.old_zone != c.new_zone and c.at == now for c in mine)
    for b in set(pre.tracks) | set(post.tracks):
        if b not in {c.badge for c in changes}:
            assert zone_of(pre, b) == zone_of(post, b)


@settings(max_examples=300, deadline=None, database=None)
@given(script=scripts(), max_badges=st.sampled_from([2, 4096]))
def test_presence_invariants(script: list[Step], max_badges: int) -> None:
    cfg = PresenceCfg(receivers=CFG.receivers, max_badges=max_badges, forget_after_s=30.0)
    s = PresenceState()
    for now, ev in script:
        post, changes = step(s, ev, now, cfg)
        _check_invariants(s, ev, now, post, changes, cfg)
        s = post


@settings(max_examples=100, deadline=None, database=None)
@given(script=scripts())
def test_step_is_deterministic(script: list[Step]) -> None:
    assert run(script) == run(script)

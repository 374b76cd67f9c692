"""Presence: BLE sightings -> the zone each badge is in. PURE (no clock, I/O or logging).

Per badge x receiver the RSSI is smoothed with an EMA. A zone's strength for a badge is
the strongest smoothed RSSI among the *up* receivers of that zone that heard the badge
within `absent_after_s`. Then (DOMAIN.md, "BLE presence"):

- the first sighting (or the first after UNKNOWN) sets the zone at once, to the
  strongest zone;
- a located badge switches zone only when another zone has been >= `switch_db` stronger
  than its current zone for >= `switch_hold_s`, evaluated at every sighting of the badge
  and every Tick (any evaluation below the margin restarts the hold);
- a badge whose current zone has no fresh sighting from an up receiver of that zone for
  `absent_after_s` becomes UNKNOWN (None): silence is not presence;
- a receiver going down makes every badge it had heard UNKNOWN at once; they stay
  UNKNOWN until a fresh sighting from an up receiver (a Tick never re-locates a badge).

`zone_of` reports the zone as of the last step; `present_in` is the query for
permissives, because it also checks freshness against `now` between Ticks.

Memory is bounded: only configured receivers are tracked, links older than
`absent_after_s` are pruned on Tick, UNKNOWN badges unheard for `forget_after_s` are
forgotten, and at `max_badges` the stalest badge is evicted (made UNKNOWN first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rules.events import Event, ReceiverStatus, Sighting, Tick

ABSENT_AFTER_S = 10.0
"""Default of `PresenceCfg.absent_after_s`, also how fresh the hot-work interlock wants a badge
sighting (`HotWorkCfg.presence_fresh_s`): one figure, so the two agree unless configured apart."""


def _no_links() -> Mapping[str, Link]:
    return MappingProxyType({})


def _no_tracks() -> Mapping[str, Track]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PresenceCfg:
    """Tuning of the presence rule; defaults from DOMAIN.md."""

    receivers: Mapping[str, str]
    """Receiver id (e.g. "gw-hci0", an ESPresense node) -> zone id it locates badges in."""
    alpha: float = 0.3
    """EMA weight of a new RSSI sample, 0 < alpha <= 1."""
    switch_db: float = 6.0
    """A candidate zone must be at least this much stronger than the current zone (dB)."""
    switch_hold_s: float = 3.0
    """...continuously for at least this long before the badge switches."""
    absent_after_s: float = ABSENT_AFTER_S
    """No sighting by an up receiver of the badge's zone for this long -> UNKNOWN."""
    forget_after_s: float = 600.0
    """An UNKNOWN badge unheard for this long is dropped from the state (bounds memory)."""
    max_badges: int = 4096
    """Hard cap on tracked badges (spoofed beacon ids must not grow the state forever)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "receivers", MappingProxyType(dict(self.receivers)))
        for rid, zone in self.receivers.items():
            if not rid or not zone:
                raise ValueError(f"presence.receivers: empty receiver or zone id in {rid!r} -> {zone!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"presence.alpha must be in (0, 1], got {self.alpha}")
        if self.switch_db < 0 or self.switch_hold_s < 0:
            raise ValueError("presence.switch_db and presence.switch_hold_s must be >= 0")
        if self.absent_after_s <= 0:
            raise ValueError(f"presence.absent_after_s must be > 0, got {self.absent_after_s}")
        if self.forget_after_s < self.absent_after_s:
            raise ValueError("presence.forget_after_s must be >= presence.absent_after_s")
        if self.max_badges < 1:
            raise ValueError(f"presence.max_badges must be >= 1, got {self.max_badges}")


@dataclass(frozen=True, slots=True)
class Link:
    """What one receiver knows of one badge."""

    rssi: float
    """Smoothed (EMA) RSSI, dBm."""
    at: float
    """Monotonic time of the latest sighting on this link."""


@dataclass(frozen=True, slots=True)
class Track:
    """One badge."""

    last_seen: float
    """Monotonic time of its latest sighting by any up, configured receiver."""
    zone: str | None = None
    """Current zone; None = UNKNOWN."""
    links: Mapping[str, Link] = field(default_factory=_no_links)
    """Receiver id -> link (only up, configured receivers)."""
    candidate: str | None = None
    """Zone currently >= switch_db stronger than `zone`, if any."""
    candidate_since: float = 0.0
    """When `candidate` first qualified (meaningful only when candidate is set)."""


@dataclass(frozen=True, slots=True)
class PresenceState:
    """Everything the presence rule remembers."""

    tracks: Mapping[str, Track] = field(default_factory=_no_tracks)
    """Badge id -> track."""
    down: frozenset[str] = frozenset()
    """Receivers reported down (their sightings are ignored until reported up)."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A badge's zone changed (None = UNKNOWN)."""

    badge: str
    old_zone: str | None
    new_zone: str | None
    at: float
    """Monotonic time of the step that decided it."""


def step(
    state: PresenceState, event: Event, now: float, cfg: PresenceCfg
) -> tuple[PresenceState, tuple[PresenceChange, ...]]:
    """Advance presence by one event. Events other than Sighting/ReceiverStatus/Tick are ignored."""
    match event:
        case Sighting():
            return _on_sighting(state, event, now, cfg)
        case ReceiverStatus():
            return _on_receiver(state, event, now, cfg)
        case Tick():
            return _on_tick(state, now, cfg)
        case _:
            return state, ()


def zone_of(state: PresenceState, badge: str) -> str | None:
    """The badge's zone as of the last step (None = UNKNOWN or never seen)."""
    t = state.tracks.get(badge)
    return None if t is None else t.zone


def last_seen(state: PresenceState, badge: str) -> float | None:
    """Monotonic time of the badge's latest accepted sighting, None if unknown/forgotten."""
    t = state.tracks.get(badge)
    return None if t is None else t.last_seen


def present_in(state: PresenceState, zone: str, now: float, cfg: PresenceCfg) -> frozenset[str]:
    """Badges located in `zone` AND heard by an up receiver of `zone` within absent_after_s of `now`.

    Safe to call between Ticks: a badge gone silent drops out here even before a Tick
    has made it UNKNOWN.
    """
    return frozenset(
        badge for badge, t in state.tracks.items() if t.zone == zone and zone in strengths(state, badge, now, cfg)
    )


@dataclass(frozen=True, slots=True)
class Occupants:
    """Who is in a zone right now, for the interlock and confined-space rules."""

    people: frozenset[str]
    """Person ids of the known badges present."""
    unknown_badges: frozenset[str]
    """Badges present that no person is registered for (an alarm inside a confined space)."""


def occupants(state: PresenceState, zone: str, now: float, cfg: PresenceCfg, people: Mapping[str, str]) -> Occupants:
    """`present_in`, resolved through `people` (badge id -> person id, from the badge registry)."""
    here = present_in(state, zone, now, cfg)
    return Occupants(
        people=frozenset(people[b] for b in here if b in people),
        unknown_badges=frozenset(b for b in here if b not in people),
    )


def strengths(state: PresenceState, badge: str, now: float, cfg: PresenceCfg) -> Mapping[str, float]:
    """Zone -> strongest fresh smoothed RSSI of `badge` among that zone's up receivers."""
    t = state.tracks.get(badge)
    if t is None:
        return {}
    return _strengths(t, state.down, now, cfg)


def _fresh(link: Link, now: float, cfg: PresenceCfg) -> bool:
    return now - link.at < cfg.absent_after_s


def _strengths(t: Track, down: frozenset[str], now: float, cfg: PresenceCfg) -> dict[str, float]:
    out: dict[str, float] = {}
    for rid, link in t.links.items():
        zone = cfg.receivers.get(rid)
        if zone is None or rid in down or not _fresh(link, now, cfg):
            continue
        if link.rssi > out.get(zone, -math.inf):
            out[zone] = link.rssi
    return out


def _strongest(s: Mapping[str, float]) -> str:
    # Ties broken by zone id so the decision never depends on dict order.
    return max(s, key=lambda z: (s[z], z))


def _decide(
    badge: str, t: Track, down: frozenset[str], now: float, cfg: PresenceCfg, sighted: bool
) -> tuple[Track, list[PresenceChange]]:
    """Re-evaluate one badge's zone. `sighted`: this step is a fresh sighting of it."""
    s = _strengths(t, down, now, cfg)
    changes: list[PresenceChange] = []
    zone, cand, since = t.zone, t.candidate, t.candidate_since
    if zone is not None and zone not in s:
        # Nothing fresh from its own zone: UNKNOWN, even if another zone hears it.
        changes.append(PresenceChange(badge, zone, None, now))
        zone, cand = None, None
    if zone is None:
        if sighted and s:
            zone = _strongest(s)
            changes.append(PresenceChange(badge, None, zone, now))
        cand = None
    else:
        others = {z: v for z, v in s.items() if z != zone}
        best = _strongest(others) if others else None
        if best is not None and others[best] - s[zone] >= cfg.switch_db:
            if cand != best:
                cand, since = best, now
            if now - since >= cfg.switch_hold_s:
                changes.append(PresenceChange(badge, zone, best, now))
                zone, cand = best, None
        else:
            cand = None
    if cand is None:
        since = 0.0
    if (zone, cand, since) == (t.zone, t.candidate, t.candidate_since):
        return t, changes
    return replace(t, zone=zone, candidate=cand, candidate_since=since), changes


def _on_sighting(
    state: PresenceState, ev: Sighting, now: float, cfg: PresenceCfg
) -> tuple[PresenceState, tuple[PresenceChange, ...]]:
    if ev.receiver not in cfg.receivers or ev.receiver in state.down or not math.isfinite(ev.rssi):
        return state, ()
    at = min(ev.at, now)  # a sighting "from the future" is clamped: time only moves forward here
    tracks = dict(state.tracks)
    changes: list[PresenceChange] = []
    t = tracks.get(ev.badge)
    if t is None:
        if len(tracks) >= cfg.max_badges:
            changes.extend(_evict_one(tracks, now))
        t = Track(last_seen=at)
    link = t.links.get(ev.receiver)
    if link is None or not _fresh(link, now, cfg):
        link = Link(rssi=ev.rssi, at=at)  # a stale EMA says nothing about now: restart it
    else:
        link = Link(rssi=cfg.alpha * ev.rssi + (1.0 - cfg.alpha) * link.rssi, at=max(link.at, at))
    links = dict(t.links)
    links[ev.receiver] = link
    t = replace(t, links=MappingProxyType(links), last_seen=max(t.last_seen, at))
    t, more = _decide(ev.badge, t, state.down, now, cfg, sighted=True)
    changes.extend(more)
    tracks[ev.badge] = t
    return replace(state, tracks=MappingProxyType(tracks)), tuple(changes)


def _evict_one(tracks: dict[str, Track], now: float) -> list[PresenceChange]:
    # Prefer an UNKNOWN badge, then the one heard longest ago.
    victim = min(tracks, key=lambda b: (tracks[b].zone is not None, tracks[b].last_seen, b))
    old = tracks.pop(victim)
    return [] if old.zone is None else [PresenceChange(victim, old.zone, None, now)]


def _on_receiver(
    state: PresenceState, ev: ReceiverStatus, now: float, cfg: PresenceCfg
) -> tuple[PresenceState, tuple[PresenceChange, ...]]:
    rid = ev.receiver
    if rid not in cfg.receivers:
        return state, ()
    if ev.up:
        if rid not in state.down:
            return state, ()
        # Nothing is re-located here: badges wait for a fresh sighting.
        return replace(state, down=state.down - {rid}), ()
    tracks = dict(state.tracks)
    changes: list[PresenceChange] = []
    for badge, t in state.tracks.items():
        if rid not in t.links:
            continue
        links = {r: lk for r, lk in t.links.items() if r != rid}
        if t.zone is not None:
            changes.append(PresenceChange(badge, t.zone, None, now))
        tracks[badge] = replace(t, zone=None, candidate=None, candidate_since=0.0, links=MappingProxyType(links))
    return replace(state, tracks=MappingProxyType(tracks), down=state.down | {rid}), tuple(changes)


def _on_tick(state: PresenceState, now: float, cfg: PresenceCfg) -> tuple[PresenceState, tuple[PresenceChange, ...]]:
    updates: dict[str, Track | None] = {}
    changes: list[PresenceChange] = []
    for badge, t in state.tracks.items():
        t2 = t
        if any(not _fresh(lk, now, cfg) for lk in t.links.values()):
            t2 = replace(t, links=MappingProxyType({r: lk for r, lk in t.links.items() if _fresh(lk, now, cfg)}))
        t2, more = _decide(badge, t2, state.down, now, cfg, sighted=False)
        changes.extend(more)
        if t2.zone is None and not t2.links and now - t2.last_seen >= cfg.forget_after_s:
            updates[badge] = None
        elif t2 is not t:
            updates[badge] = t2
    if not updates:
        return state, tuple(changes)
    tracks = dict(state.tracks)
    for badge, t3 in updates.items():
        if t3 is None:
            del tracks[badge]
        else:
            tracks[badge] = t3
    return replace(state, tracks=MappingProxyType(tracks)), tuple(changes)

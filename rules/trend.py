"""Minute trends for the last 24 h in bounded memory, pure (no clock: minutes are passed in).

One `MinuteRing` per point: 1440 slots, slot = minute % 1440. A value for a newer minute
takes over its slot (the one 24 h older is overwritten); a value older than the newest
minute minus 1439 is dropped. Memory is allocated once and never grows; `add` is O(1).
`series()` lists the minutes inside the window, oldest first, for the status page.

Minute keys are integers: `minute_of(seconds)` makes one from monotonic or epoch seconds.
Use one kind of key per ring; epoch minutes line up with wall-clock charts.

This is a mutable buffer, not rule state: the shell owns it and feeds it GOOD values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

SLOTS = 1440
"""24 h of minutes."""
_EMPTY = -(2**62)
"""Key of a slot that never held a value (older than any real minute)."""


def minute_of(seconds: float) -> int:
    """The minute key of a time in seconds (monotonic or epoch)."""
    return math.floor(seconds / 60.0)


@dataclass(frozen=True, slots=True)
class MinutePoint:
    """Aggregate of one minute of one point."""

    minute: int
    """Minute key (seconds // 60 of the clock that fed it)."""
    min: float
    max: float
    mean: float
    count: int


class MinuteRing:
    """Min/max/mean/count per minute over the last `SLOTS` minutes of one point."""

    __slots__ = ("_count", "_key", "_latest", "_max", "_min", "_sum")

    def __init__(self) -> None:
        self._key = [_EMPTY] * SLOTS
        self._min = [0.0] * SLOTS
        self._max = [0.0] * SLOTS
        self._sum = [0.0] * SLOTS
        self._count = [0] * SLOTS
        self._latest = _EMPTY

    @property
    def latest(self) -> int | None:
        """Newest minute seen (None: empty)."""
        return None if self._latest == _EMPTY else self._latest

    @property
    def slots(self) -> int:
        """Allocated slots: always `SLOTS`."""
        return len(self._key)

    def add(self, value: float, minute: int) -> bool:
        """Fold one value into its minute; False if dropped (non-finite or older than the window)."""
        if not math.isfinite(value) or minute <= self._latest - SLOTS:
            return False
        if minute > self._latest:
            self._latest = minute
        i = minute % SLOTS
        if self._key[i] != minute:
            # Any other key in this slot is a multiple of 24 h older: overwrite it.
            self._key[i] = minute
            self._min[i] = self._max[i] = self._sum[i] = value
            self._count[i] = 1
            return True
        if value < self._min[i]:
            self._min[i] = value
        if value > self._max[i]:
            self._max[i] = value
        self._sum[i] += value
        self._count[i] += 1
        return True

    def series(self, until: int | None = None) -> list[MinutePoint]:
        """Minutes in (until - SLOTS, until], oldest first; `until` defaults to the newest minute.

        Pass the current minute as `until` so a point that stopped reporting shows its gap.
        """
        if self._latest == _EMPTY:
            return []
        end = self._latest if until is None else until
        start = end - SLOTS + 1
        out: list[MinutePoint] = []
        # Walk the window in time order: slot of `start` first, wrapping once.
        first = start % SLOTS
        for i in (*range(first, SLOTS), *range(first)):
            k = self._key[i]
            if start <= k <= end:
                n = self._count[i]
                out.append(MinutePoint(k, self._min[i], self._max[i], self._sum[i] / n, n))
        return out


class Trends:
    """Minute rings for a fixed set of points (unknown points are refused, so it never grows)."""

    __slots__ = ("_rings",)

    def __init__(self, points: Iterable[str]) -> None:
        self._rings = {p: MinuteRing() for p in points}

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(self._rings)

    def add(self, point: str, value: float, minute: int) -> bool:
        """Fold a value into a point's ring; False if the point is unknown or the value dropped."""
        ring = self._rings.get(point)
        return ring is not None and ring.add(value, minute)

    def series(self, point: str, until: int | None = None) -> list[MinutePoint]:
        """A point's minutes (see `MinuteRing.series`); KeyError names an unknown point."""
        ring = self._rings.get(point)
        if ring is None:
            raise KeyError(f"trends: unknown point {point!r}; configured: {sorted(self._rings)}")
        return ring.series(until)

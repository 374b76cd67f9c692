"""Rolling time-weighted averages (STEL 15 min, TWA 8 h) in bounded memory, pure.

Each reading's value is held until the next reading (never across a stale gap) and its
integral is added to fixed-width time buckets; a window keeps at most `n + 1` buckets.
The oldest bucket, partly outside the window, is counted whole: the average errs high by
at most (value x bucket width / window), i.e. toward alarming, never toward silence.
Averages divide by the full window (the exposure-limit definition), so time before the
first reading counts as zero exposure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

STEL_S = 15 * 60.0
TWA_S = 8 * 3600.0


@dataclass(frozen=True, slots=True)
class Window:
    window_s: float
    n: int
    ring: tuple[tuple[int, float], ...] = ()
    """(bucket index, integral of value x seconds), oldest first, at most n + 1 entries."""

    @property
    def width(self) -> float:
        return self.window_s / self.n

    def add(self, value: float, t0: float, t1: float) -> Window:
        if t1 <= t0:
            return self
        t0 = max(t0, t1 - self.window_s - self.width)
        w = self.width
        acc = dict(self.ring)
        i = math.floor(t0 / w)
        last = math.floor(t1 / w)
        while i <= last:
            lo, hi = max(t0, i * w), min(t1, (i + 1) * w)
            if hi > lo:
                acc[i] = acc.get(i, 0.0) + value * (hi - lo)
            i += 1
        # Prune against the newest bucket held, not this interval's: an interval that ends
        # earlier than one already added (a rewound time) must not keep extra buckets alive.
        keep = max(last, *acc) - self.n if acc else last - self.n
        return replace(self, ring=tuple(sorted((k, v) for k, v in acc.items() if k >= keep)))

    def average(self, now: float, pending: float = 0.0) -> float:
        first = math.floor((now - self.window_s) / self.width)
        return (sum(v for k, v in self.ring if k >= first) + pending) / self.window_s


@dataclass(frozen=True, slots=True)
class Exposure:
    stel_w: Window = Window(STEL_S, 60)
    twa_w: Window = Window(TWA_S, 96)
    last_value: float | None = None
    last_at: float | None = None
    max_gap: float = 5.0

    def add(self, value: float, at: float, max_gap: float) -> Exposure:
        stel_w, twa_w = self.stel_w, self.twa_w
        if self.last_value is not None and self.last_at is not None and at > self.last_at:
            end = min(at, self.last_at + max_gap)
            stel_w = stel_w.add(self.last_value, self.last_at, end)
            twa_w = twa_w.add(self.last_value, self.last_at, end)
        return Exposure(stel_w, twa_w, value, at, max_gap)

    def _pending(self, now: float, window_s: float) -> float:
        """The held last value from its reading up to now (not yet in the buckets)."""
        if self.last_value is None or self.last_at is None or now <= self.last_at:
            return 0.0
        # Exact: the held piece [last_at, last_at + max_gap] clipped to the window [now - window_s, now].
        # Counting it whole broke the documented bound once max_gap exceeds a bucket width (a held
        # piece lying wholly before the window was still counted).
        lo = max(self.last_at, now - window_s)
        hi = min(now, self.last_at + self.max_gap)
        return self.last_value * max(0.0, hi - lo)

    def stel(self, now: float) -> float:
        return self.stel_w.average(now, self._pending(now, STEL_S))

    def twa(self, now: float) -> float:
        return self.twa_w.average(now, self._pending(now, TWA_S))

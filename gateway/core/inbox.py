"""The engine's inbox: two lanes so that telemetry can never starve safety events.

The safety lane is unbounded in principle but counted (it carries few events); the
telemetry lane is bounded and, when full, drops its oldest entry and counts the drop:
a dropped telemetry reading is followed by a fresher one, and staleness is still
decided by the engine, so a flood degrades to "stale", never to "good".
"""

from __future__ import annotations

import asyncio
from collections import deque

from rules.events import SAFETY_EVENTS, Event, Reading


class Inbox:
    def __init__(self, telemetry_max: int = 20_000, safety_signals: frozenset[str] = frozenset()) -> None:
        self._safety: deque[Event] = deque()
        self._telemetry: deque[Event] = deque(maxlen=telemetry_max)
        self._safety_signals = safety_signals
        self._ready = asyncio.Event()
        self.dropped = 0
        self.accepted = 0

    def is_safety(self, ev: Event) -> bool:
        if isinstance(ev, Reading):
            return ev.signal in self._safety_signals
        return isinstance(ev, SAFETY_EVENTS)

    def put(self, ev: Event) -> None:
        """Thread-unsafe, loop-safe: call from the event loop only (drivers do)."""
        self.accepted += 1
        if self.is_safety(ev):
            self._safety.append(ev)
        else:
            if len(self._telemetry) == self._telemetry.maxlen:
                self.dropped += 1
            self._telemetry.append(ev)
        self._ready.set()

    def take_readings(self, first: Reading, n: int) -> list[Reading]:
        """`first` and up to n-1 more telemetry readings from the head of the telemetry lane, stopping
        early when a safety event is waiting (so it is served next) or a non-reading is at the head."""
        out = [first]
        tel = self._telemetry
        while len(out) < n and tel and not self._safety and isinstance(tel[0], Reading):
            out.append(tel.popleft())  # type: ignore[arg-type]
        return out

    def get_nowait(self) -> Event | None:
        if self._safety:
            return self._safety.popleft()
        if self._telemetry:
            return self._telemetry.popleft()
        self._ready.clear()
        return None

    async def get(self, wait_s: float) -> Event | None:
        """The next event, safety first; None when nothing came within `wait_s`."""
        ev = self.get_nowait()
        if ev is not None:
            return ev
        try:
            async with asyncio.timeout(wait_s):
                await self._ready.wait()
        except TimeoutError:
            return None
        return self.get_nowait()

    def depth(self) -> tuple[int, int]:
        return len(self._safety), len(self._telemetry)

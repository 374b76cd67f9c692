"""One fake clock for tests: monotonic seconds and UTC, both moved only by the test.

`FakeClock` is the shell's `gateway.core.clock.Clock` (`monotonic()`, `utc()`) and also fits
the other clock shapes the code takes:

* a plain `() -> float` of monotonic seconds (auth's stores, `BleSource`): pass `clock.monotonic`;
* a plain `() -> float` of epoch seconds (`AuditLog`): pass `clock.time`;
* the face gate's `now_mono()` / `now_utc()`.

Move it with `advance(s)` (both clocks), or set `mono` / `set_utc(...)` directly (a wall-clock
step moves UTC alone).
"""

from __future__ import annotations

from datetime import UTC, datetime

DEFAULT_UTC = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    def __init__(self, mono: float = 0.0, utc: float | datetime = DEFAULT_UTC) -> None:
        self.mono = float(mono)
        self.utc_s = 0.0
        self.set_utc(utc)

    # ---- reading
    def monotonic(self) -> float:
        return self.mono

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.utc_s, UTC)

    def time(self) -> float:
        """UTC as epoch seconds, like `time.time()`."""
        return self.utc_s

    def now_mono(self) -> float:
        return self.monotonic()

    def now_utc(self) -> datetime:
        return self.utc()

    # ---- moving
    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move by `seconds`."""
        self.mono += seconds
        self.utc_s += seconds

    def set_utc(self, when: float | datetime) -> None:
        """Set the wall clock alone (epoch seconds or an aware datetime); monotonic time is untouched."""
        self.utc_s = when.timestamp() if isinstance(when, datetime) else float(when)

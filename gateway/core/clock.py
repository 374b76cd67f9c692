"""The only place the shell reads time; tests inject their own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def utc(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class SystemClock:
    """Decisions use the monotonic clock; UTC is only recorded (a wall-clock jump changes no decision)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

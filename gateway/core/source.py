"""Sources: everything that brings events in (Modbus devices, MQTT inputs, BLE receivers, face
terminals over MQTT, permit sync). Face events over HTTP come in through the status server.

A source runs until cancelled and puts typed events on the inbox; field faults are events
(BAD readings, a device or receiver down), never exceptions. Should it raise anyway, the
daemon's supervisor logs it once, counts it, calls `on_down` so the rules deny what depended
on it, and restarts it alone (docs/architecture.md, "One supervisor").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Source(Protocol):
    async def run(self) -> Any:
        """Read forever, emitting events; return only when there is nothing to read."""
        ...


@dataclass(frozen=True, slots=True)
class Supervised:
    """One long-running task of a source or a non-output sink, as the supervisor runs it."""

    name: str
    """`kind[instance]`, e.g. `modbus[gas-t101]`: the task's name in logs, /metrics and /api/state."""
    run: Callable[[], Awaitable[object]]
    on_down: Callable[[str], None] | None = None
    """Called with the failure while the task restarts: its device or receiver is down."""


__all__ = ["Source", "Supervised"]

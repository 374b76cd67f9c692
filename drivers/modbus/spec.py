"""What one Modbus device is and how to reach it (frozen, validated when built)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .codec import PointSpec, StatusSpec, status_points
from .errors import ConfigError

MIN_FRAME_GAP_S = 0.00175
"""Modbus over serial line spec: above 19200 baud the 3.5-character gap is fixed at 1.75 ms."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One Modbus device (a unit id on a TCP endpoint or on a serial line)."""

    id: str
    """Device id from the configuration; used in DeviceStatus and logs."""
    transport: Literal["tcp", "rtu"]
    host: str = ""
    """TCP only."""
    port: int = 502
    """TCP only."""
    serial_port: str = ""
    """RTU only: the serial device path (e.g. /dev/ttyUSB0, or a socat pty)."""
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "E"
    """Modbus RTU default is 8E1."""
    stopbits: int = 1
    unit_id: int = 1
    poll_s: float = 1.0
    timeout_s: float = 0.5
    """Response timeout of one transaction."""
    retries: int = 1
    """Extra attempts of a transaction that timed out or came back garbled (not exception codes)."""
    points: tuple[PointSpec, ...] = ()
    status: StatusSpec | None = None
    inter_frame_gap_s: float | None = None
    """RTU silence between frames; None = 3.5 character times at the baud rate, at least 1.75 ms."""
    max_gap: int = 0
    """Largest hole (registers) a block read may span; 0 = only adjacent registers merge."""
    backoff_cap_s: float = 30.0
    """Upper bound of the jittered exponential reconnect backoff."""

    def __post_init__(self) -> None:
        where = f"devices.{self.id or '?'}"
        if not self.id:
            raise ConfigError(where, "id must not be empty")
        if self.transport == "tcp":
            if not self.host or not 0 < self.port < 65536:
                raise ConfigError(where, f"tcp needs host and a port in 1..65535, got {self.host!r}:{self.port}")
        elif self.transport == "rtu":
            if not self.serial_port:
                raise ConfigError(where, "rtu needs serial_port (e.g. /dev/ttyUSB0)")
            if self.baudrate <= 0 or self.parity not in ("N", "E", "O") or self.stopbits not in (1, 2):
                raise ConfigError(where, f"bad serial settings {self.baudrate} {self.parity} {self.stopbits}")
        else:
            raise ConfigError(where, f"transport must be 'tcp' or 'rtu', got {self.transport!r}")
        if not 0 <= self.unit_id <= 247:
            raise ConfigError(where, f"unit_id {self.unit_id} outside 0..247")
        if self.poll_s <= 0 or self.timeout_s <= 0 or self.retries < 0 or self.backoff_cap_s <= 0:
            raise ConfigError(where, "poll_s, timeout_s and backoff_cap_s must be > 0 and retries >= 0")
        seen: set[str] = set()
        for p in self.points:
            if p.signal in seen:
                raise ConfigError(f"{where}.points.{p.signal}", "duplicate signal")
            seen.add(p.signal)
        if self.status is not None:
            for extra in (self.status.bump_signal, self.status.calibration_signal):
                if extra and extra in seen:
                    raise ConfigError(f"{where}.status", f"signal {extra!r} is also a point")
            status_points(self.status)

    @property
    def bus_key(self) -> str:
        """Identity of the shared medium: one lock (and one client) per bus."""
        return f"{self.host}:{self.port}" if self.transport == "tcp" else self.serial_port

    @property
    def frame_gap_s(self) -> float:
        """Silence kept between RTU frames on this bus (0 for TCP)."""
        if self.transport == "tcp":
            return 0.0
        if self.inter_frame_gap_s is not None:
            return self.inter_frame_gap_s
        bits_per_char = 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits_per_char / self.baudrate, MIN_FRAME_GAP_S)

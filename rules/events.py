"""Typed events that enter the engine. Frozen, validated when built, no I/O.

Every event that carries a time carries *monotonic* seconds (`at`) taken by the shell
when the fact was observed; wall-clock UTC appears only as data to be recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rules.permit import Permit


class Quality(StrEnum):
    """OPC-style quality of a value. Anything but GOOD is never "safe"."""

    GOOD = "good"
    BAD = "bad"


class BadReason(StrEnum):
    """Why a reading is BAD. Field faults become readings with a reason, never exceptions."""

    TIMEOUT = "timeout"
    CRC = "crc_error"
    EXCEPTION_CODE = "exception_code"
    SHORT_FRAME = "short_frame"
    DISCONNECTED = "disconnected"
    DEVICE_FAULT = "device_fault"
    WARMUP = "warm_up"
    OVER_RANGE = "over_range"
    UNDER_RANGE = "under_range"
    LOOP_FAULT = "loop_fault"  # NAMUR NE43: < 3.6 mA or > 21 mA
    NOT_A_NUMBER = "not_a_number"
    STALE = "stale"
    BAD_PAYLOAD = "bad_payload"
    UNIT_MISMATCH = "unit_mismatch"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one configured signal."""

    signal: str
    """Signal id from the configuration."""
    value: float
    """Value in the signal's configured unit; NaN when quality is BAD."""
    at: float
    """Monotonic seconds when the value was acquired."""
    quality: Quality = Quality.GOOD
    reason: str = ""
    """Empty when GOOD; a `BadReason` value (plus detail after a colon) when BAD."""

    def __post_init__(self) -> None:
        if not self.signal:
            raise ValueError("Reading.signal must not be empty")
        if self.quality is Quality.GOOD and not math.isfinite(self.value):
            raise ValueError(f"Reading({self.signal}): GOOD quality needs a finite value, got {self.value!r}")
        if self.quality is not Quality.GOOD and not self.reason:
            raise ValueError(f"Reading({self.signal}): BAD quality needs a reason")


@dataclass(frozen=True, slots=True)
class Tick:
    """Carries time forward: staleness, countdowns and expiries are decided on ticks."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device went down or came back (emitted by a source on change only)."""

    device: str
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OutputFeedback:
    """The read-back of an output after a write (or a periodic re-check)."""

    output: str
    commanded: bool
    observed: bool | None
    """None when the read-back itself failed."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """An authorized acknowledgement of an alarm or fault.

    `target` is a signal id, or "*" for every acknowledgeable condition in `zone`.
    """

    target: str
    user: str
    role: str
    utc: str
    """ISO 8601 UTC time of the acknowledgement, for the record."""
    zone: str = ""


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute the audible outputs of a zone; re-arms after the configured time (60 s)."""

    zone: str
    user: str
    utc: str


@dataclass(frozen=True, slots=True)
class Sighting:
    """One BLE advertisement of a badge heard by a receiver."""

    badge: str
    """Beacon id, e.g. "ibeacon:<uuid>:<major>:<minor>" or "eddystone:<ns>:<instance>"."""
    receiver: str
    rssi: float
    at: float


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """A BLE receiver (adapter or ESPresense node) was lost or came back."""

    receiver: str
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """A face verification already authenticated by the face driver (terminal key, replay, clock)."""

    terminal: str
    person: str
    at: float
    """Monotonic time the gateway accepted the event."""
    utc: str
    """The terminal's own event time, normalised to UTC (for the record)."""
    seq: int
    zone: str = ""
    """The zone the terminal is mapped to (from the gateway's allow-list, never from the event)."""


@dataclass(frozen=True, slots=True)
class PermitUpdate:
    """A permit that passed signature and validity checks in the shell (or a new version of one)."""

    permit: Permit
    utc_offset: float
    """now_utc - now_mono when it arrived: the rules convert its UTC instants to monotonic time."""


@dataclass(frozen=True, slots=True)
class SensorDates:
    """A detector's last bump test and calibration, as its status registers report them (on change)."""

    device: str
    bump_utc: float | None
    """Unix seconds of the last passed bump test; None: never done (or not reported)."""
    calibration_utc: float | None
    utc_offset: float
    """now_utc - now_mono when read: the rules compare in monotonic time."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bad input that a driver refused: counted and shown, never acted on."""

    source: str
    """Where it came from, e.g. "mqtt:plant/gas/1" or "face:term-3"."""
    reason: str
    detail: str = ""


Event = (
    Reading
    | Tick
    | DeviceStatus
    | OutputFeedback
    | Ack
    | Silence
    | Sighting
    | ReceiverStatus
    | FaceMatch
    | PermitUpdate
    | SensorDates
    | Rejected
)

# Events that touch safety go on the inbox's priority lane (telemetry cannot starve them).
SAFETY_EVENTS: tuple[type, ...] = (
    Tick,
    DeviceStatus,
    OutputFeedback,
    Ack,
    Silence,
    Sighting,
    ReceiverStatus,
    FaceMatch,
    PermitUpdate,
    SensorDates,
)

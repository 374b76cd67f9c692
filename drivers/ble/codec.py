"""Pure decoding of BLE badge advertisements: iBeacon and Eddystone-UID.

Bytes in, a typed `BeaconId` (or a `Rejection` saying why not) out. No I/O, no logging,
never raises on field data: a truncated or odd frame is a value, so the source can count
it and carry on. Advertisements that are not beacon frames at all (an Apple "Nearby"
blob, an Eddystone URL or TLM frame) decode to nothing: they are neither badges nor faults.

Formats (DOMAIN.md):
- iBeacon: manufacturer data under company id 0x004C = 02 15 + UUID(16) + major(2, BE) +
  minor(2, BE) + measured power at 1 m (int8): exactly 23 bytes.
- Eddystone: service data under 0000feaa-0000-1000-8000-00805f9b34fb; frame type = high
  nibble of byte 0 (UID 0x0, URL 0x1, TLM 0x2, EID 0x3); UID = frame type + tx power at
  0 m (int8) + 10-byte namespace + 6-byte instance (+ 2 reserved bytes, which some
  badges omit): 18 or 20 bytes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from drivers.ble.errors import BadgeConfigError

APPLE_COMPANY_ID = 0x004C
"""Bluetooth SIG company id under which iBeacon frames are carried."""
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
"""128-bit form of the Eddystone 16-bit service UUID 0xFEAA, as bleak reports it."""

_IBEACON_TYPE = 0x02
_IBEACON_LEN = 0x15  # bytes that follow the two header bytes
_IBEACON_FRAME_LEN = 2 + _IBEACON_LEN
_EDDYSTONE_UID = 0x0
_EDDYSTONE_IGNORED = {0x1: "url", 0x2: "tlm", 0x3: "eid"}
_EDDYSTONE_UID_LEN = 18  # without the 2 reserved bytes
_EDDYSTONE_UID_LEN_RESERVED = 20


class BeaconKind(StrEnum):
    """The beacon format a badge id came from; also the prefix of the canonical id."""

    IBEACON = "ibeacon"
    EDDYSTONE = "eddystone"


class RejectReason(StrEnum):
    """Why a beacon-looking frame was refused."""

    TRUNCATED = "truncated"
    """Shorter than the format needs."""
    BAD_LENGTH = "bad_length"
    """The iBeacon length byte is not 0x15, or an Eddystone-UID frame of 19 bytes."""
    TRAILING_BYTES = "trailing_bytes"
    """Longer than the format allows: an odd frame, not trusted as a badge."""
    UNKNOWN_FRAME = "unknown_frame"
    """An Eddystone frame type this gateway does not know (not UID/URL/TLM/EID)."""


@dataclass(frozen=True, slots=True)
class BeaconId:
    """One decoded badge advertisement."""

    kind: BeaconKind
    """Which format it came from."""
    id: str
    """Canonical badge id: "ibeacon:<uuid lowercase>:<major>:<minor>" (major/minor decimal)
    or "eddystone:<namespace 20 hex>:<instance 12 hex>"."""
    tx_power: int
    """Calibrated power the badge advertises (dBm): at 1 m for iBeacon, at 0 m for Eddystone."""

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class Rejection:
    """A frame that looked like a beacon but is malformed."""

    kind: BeaconKind
    """The format the frame claimed to be."""
    reason: RejectReason
    detail: str
    """Human-readable specifics (lengths, the offending byte)."""


Decoded = BeaconId | Rejection


def ibeacon_id(uuid_: uuid.UUID | str, major: int, minor: int) -> str:
    """The canonical id of an iBeacon; raises ValueError on out-of-range parts (config use)."""
    u = uuid_ if isinstance(uuid_, uuid.UUID) else uuid.UUID(uuid_)
    for name, value in (("major", major), ("minor", minor)):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"iBeacon {name} must be 0..65535, got {value}")
    return f"{BeaconKind.IBEACON}:{u}:{major}:{minor}"


def eddystone_id(namespace: bytes, instance: bytes) -> str:
    """The canonical id of an Eddystone-UID beacon; raises ValueError on wrong lengths."""
    if len(namespace) != 10 or len(instance) != 6:
        raise ValueError(f"Eddystone namespace/instance must be 10/6 bytes, got {len(namespace)}/{len(instance)}")
    return f"{BeaconKind.EDDYSTONE}:{namespace.hex()}:{instance.hex()}"


def decode_ibeacon(data: bytes) -> Decoded | None:
    """Decode Apple manufacturer data (company 0x004C, company id already stripped).

    Returns None for Apple data that is not an iBeacon (type byte other than 0x02):
    phones broadcast plenty of those and they are not badge faults.
    """
    if not data or data[0] != _IBEACON_TYPE:
        return None
    if len(data) < 2:
        return Rejection(BeaconKind.IBEACON, RejectReason.TRUNCATED, "1 byte, header needs 2")
    if data[1] != _IBEACON_LEN:
        return Rejection(BeaconKind.IBEACON, RejectReason.BAD_LENGTH, f"length byte 0x{data[1]:02x}, expected 0x15")
    if len(data) < _IBEACON_FRAME_LEN:
        return Rejection(
            BeaconKind.IBEACON, RejectReason.TRUNCATED, f"{len(data)} bytes, expected {_IBEACON_FRAME_LEN}"
        )
    if len(data) > _IBEACON_FRAME_LEN:
        return Rejection(
            BeaconKind.IBEACON,
            RejectReason.TRAILING_BYTES,
            f"{len(data)} bytes, expected {_IBEACON_FRAME_LEN}",
        )
    u = uuid.UUID(bytes=bytes(data[2:18]))
    major = int.from_bytes(data[18:20], "big")
    minor = int.from_bytes(data[20:22], "big")
    power = int.from_bytes(data[22:23], "big", signed=True)
    return BeaconId(BeaconKind.IBEACON, ibeacon_id(u, major, minor), power)


def decode_eddystone(data: bytes) -> Decoded | None:
    """Decode Eddystone service data (the bytes under the 0xFEAA service UUID).

    URL, TLM and EID frames are recognized and return None: they carry no badge id.
    """
    if not data:
        return Rejection(BeaconKind.EDDYSTONE, RejectReason.TRUNCATED, "empty service data")
    frame = data[0] >> 4
    if frame in _EDDYSTONE_IGNORED:
        return None
    if frame != _EDDYSTONE_UID:
        return Rejection(BeaconKind.EDDYSTONE, RejectReason.UNKNOWN_FRAME, f"frame byte 0x{data[0]:02x}")
    n = len(data)
    if n < _EDDYSTONE_UID_LEN:
        return Rejection(BeaconKind.EDDYSTONE, RejectReason.TRUNCATED, f"UID frame of {n} bytes, expected 18 or 20")
    if n > _EDDYSTONE_UID_LEN_RESERVED:
        return Rejection(
            BeaconKind.EDDYSTONE, RejectReason.TRAILING_BYTES, f"UID frame of {n} bytes, expected 18 or 20"
        )
    if n != _EDDYSTONE_UID_LEN and n != _EDDYSTONE_UID_LEN_RESERVED:
        return Rejection(BeaconKind.EDDYSTONE, RejectReason.BAD_LENGTH, f"UID frame of {n} bytes, expected 18 or 20")
    power = int.from_bytes(data[1:2], "big", signed=True)
    return BeaconId(BeaconKind.EDDYSTONE, eddystone_id(bytes(data[2:12]), bytes(data[12:18])), power)


def decode_advertisement(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> tuple[Decoded, ...]:
    """Every beacon frame in one advertisement (bleak's AdvertisementData fields).

    Usually zero or one result; a device advertising both formats yields both.
    """
    out: list[Decoded] = []
    apple = manufacturer_data.get(APPLE_COMPANY_ID)
    if apple is not None and (d := decode_ibeacon(apple)) is not None:
        out.append(d)
    for key, data in service_data.items():
        # bleak reports 128-bit lowercase UUIDs; normalise anyway so "FEAA" forms match.
        if _normalise_service_uuid(key) == EDDYSTONE_SERVICE_UUID and (d := decode_eddystone(data)):
            out.append(d)
    return tuple(out)


def _normalise_service_uuid(key: str) -> str:
    k = key.strip().lower()
    if len(k) == 4:
        return f"0000{k}-0000-1000-8000-00805f9b34fb"
    return k


_IBEACON_RE = re.compile(r"^ibeacon:([0-9a-fA-F-]{32,36}):(\d{1,5}):(\d{1,5})$")
_EDDYSTONE_RE = re.compile(r"^eddystone:([0-9a-fA-F]{20}):([0-9a-fA-F]{12})$")


def canonical_badge_id(text: str) -> str:
    """Normalise a badge id written in configuration; raises ValueError if it is not one.

    Accepts any UUID spelling (upper case, with or without hyphens) and upper-case hex.
    """
    t = text.strip()
    if m := _IBEACON_RE.match(t):
        return ibeacon_id(uuid.UUID(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _EDDYSTONE_RE.match(t):
        return eddystone_id(bytes.fromhex(m.group(1)), bytes.fromhex(m.group(2)))
    raise ValueError(
        f"{text!r} is not a badge id: expected 'ibeacon:<uuid>:<major>:<minor>' "
        "or 'eddystone:<20 hex namespace>:<12 hex instance>'"
    )


@dataclass(frozen=True, slots=True)
class BadgeRegistry:
    """Which person wears which badge, frozen from configuration.

    Unknown badges are reported as unknown (None), never dropped: an unknown badge inside
    a confined space is itself an alarm for the rules.
    """

    people: Mapping[str, str]
    """Canonical badge id -> person id."""

    @classmethod
    def from_config(cls, badges: Mapping[str, str] | Iterable[tuple[str, str]], where: str = "badges") -> BadgeRegistry:
        """Build from `{badge id: person id}`; ids are normalised.

        Raises BadgeConfigError (naming `where.<badge>`) on a malformed id, an empty person,
        or two spellings of the same badge: a badge silently mapped twice could put the
        wrong person on a permit.
        """
        pairs = badges.items() if isinstance(badges, Mapping) else badges
        out: dict[str, str] = {}
        for raw, person in pairs:
            place = f"{where}.{raw}"
            try:
                key = canonical_badge_id(raw)
            except ValueError as exc:
                raise BadgeConfigError(place, str(exc)) from exc
            if not person:
                raise BadgeConfigError(place, "person id must not be empty")
            if key in out:
                raise BadgeConfigError(place, f"badge listed twice (same as {key}); keep one entry")
            out[key] = person
        return cls(MappingProxyType(out))

    def person_of(self, badge: str) -> str | None:
        """The person wearing `badge` (a canonical id), or None for an unknown badge."""
        return self.people.get(badge)

    def is_known(self, badge: str) -> bool:
        """True when `badge` is listed in the configuration."""
        return badge in self.people

    def badges_of(self, person: str) -> frozenset[str]:
        """Every badge configured for `person` (a spare badge is allowed)."""
        return frozenset(b for b, p in self.people.items() if p == person)

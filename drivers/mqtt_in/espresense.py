"""Pure decoder of ESPresense BLE sightings.

ESPresense nodes (one ESP32 per room) publish every device they hear on
``{prefix}/devices/{device_id}/{room}`` with a JSON payload such as
``{"id": "iBeacon:e5ca1ade-...-1-2", "rssi": -71, "rssi@1m": -59, "raw": 2.1,
"distance": 2.3, "speed": 0.1, "mac": "c2:...", "txPower": -59}``. Only ``rssi`` is
required; the gateway's presence rule does its own filtering and does not trust the
node's distance estimate.

Receiver id: ``rooms[room]`` when configured; otherwise the room name itself when
`passthrough_rooms` is set (an unconfigured receiver belongs to no zone, so it can never
grant presence); otherwise the sighting is refused as ``unknown_room``.

Badge id (so one badge gets the same id whether a gateway's own adapter or an
ESPresense node heard it, matching `rules.events.Sighting.badge`):

1. ``badges[device_id]`` when configured (exact ESPresense id, e.g. ``"irk:..."``);
2. otherwise, when `passthrough_badges` is set:
   ``iBeacon:<uuid>-<major>-<minor>`` -> ``ibeacon:<uuid lower-case>:<major>:<minor>``
   (major/minor as plain decimals), ``eddy:<20 hex namespace>-<12 hex instance>`` ->
   ``eddystone:<namespace>:<instance>`` (lower case), and any other id
   (``irk:...``, ``name:...``, MAC ...) unchanged;
3. otherwise the sighting is refused as ``unknown_device``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from .codec import MISSING, Rejection, RejectReason, as_number, lookup, parse_json
from .errors import MqttConfigError

_IBEACON = re.compile(
    r"ibeacon:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-([0-9]{1,5})-([0-9]{1,5})", re.IGNORECASE
)
_EDDY = re.compile(r"eddy:([0-9a-f]{20})-([0-9a-f]{12})", re.IGNORECASE)
_TOPIC_CHARS_BAD: Final = frozenset("+#/\x00")


def _frozen_map(d: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class EspresenseCfg:
    """Where ESPresense publishes and how its rooms and device ids map to ours."""

    prefix: str = "espresense"
    """The nodes' MQTT base topic (ESPresense's default is ``espresense``)."""
    rooms: Mapping[str, str] = field(default_factory=_frozen_map)
    """ESPresense room name -> receiver id (receivers map to zones in the presence rule)."""
    badges: Mapping[str, str] = field(default_factory=_frozen_map)
    """ESPresense device id -> badge id; wins over the derived id."""
    passthrough_rooms: bool = True
    """Unmapped rooms become receivers named like the room."""
    passthrough_badges: bool = True
    """Unmapped device ids become badge ids by the derivation in the module docstring."""
    qos: int = 0
    """Sightings repeat every second or so; QoS 0 is enough."""
    max_bytes: int = 4096
    rssi_min: float = -127.0
    rssi_max: float = 20.0

    def __post_init__(self) -> None:
        # Freeze caller-supplied dicts so a shared config cannot change under the driver.
        object.__setattr__(self, "rooms", _frozen_map(self.rooms))
        object.__setattr__(self, "badges", _frozen_map(self.badges))
        if not self.prefix or any(c in _TOPIC_CHARS_BAD for c in self.prefix.replace("/", "")):
            raise MqttConfigError("mqtt_in.espresense.prefix", f"{self.prefix!r}: a plain topic, no wildcards")
        if self.prefix.startswith("/") or self.prefix.endswith("/") or "//" in self.prefix:
            raise MqttConfigError("mqtt_in.espresense.prefix", f"{self.prefix!r}: no empty levels")
        if self.qos not in (0, 1, 2):
            raise MqttConfigError("mqtt_in.espresense.qos", f"{self.qos}: QoS is 0, 1 or 2")
        if not self.rssi_min < self.rssi_max:
            raise MqttConfigError("mqtt_in.espresense", "need rssi_min < rssi_max")
        for name, m in (("rooms", self.rooms), ("badges", self.badges)):
            for k, v in m.items():
                if not k or not v:
                    raise MqttConfigError(f"mqtt_in.espresense.{name}", f"{k!r} -> {v!r}: empty id")

    @property
    def topic_filter(self) -> str:
        """What to subscribe to."""
        return f"{self.prefix}/devices/+/+"


@dataclass(frozen=True, slots=True)
class EspSighting:
    """One ESPresense report, decoded and mapped."""

    device_id: str
    """ESPresense's own device id (topic level 3)."""
    room: str
    """ESPresense room name (topic level 4)."""
    badge: str
    """Our badge id."""
    receiver: str
    """Our receiver id."""
    rssi: float
    """dBm as the node measured it (median of its last three)."""
    distance: float | None = None
    """The node's own distance estimate in metres, informative only."""


def derive_badge_id(device_id: str) -> str:
    """The badge id an ESPresense device id passes through to (see the module docstring)."""
    if (m := _IBEACON.fullmatch(device_id)) and int(m[2]) <= 0xFFFF and int(m[3]) <= 0xFFFF:
        return f"ibeacon:{m[1].lower()}:{int(m[2])}:{int(m[3])}"
    if m := _EDDY.fullmatch(device_id):
        return f"eddystone:{m[1].lower()}:{m[2].lower()}"
    return device_id


def badge_id(cfg: EspresenseCfg, device_id: str) -> str | None:
    """Our badge id for an ESPresense device id, or None when it is not accepted."""
    if (mapped := cfg.badges.get(device_id)) is not None:
        return mapped
    return derive_badge_id(device_id) if cfg.passthrough_badges else None


def receiver_id(cfg: EspresenseCfg, room: str) -> str | None:
    """Our receiver id for an ESPresense room, or None when it is not accepted."""
    if (mapped := cfg.rooms.get(room)) is not None:
        return mapped
    return room if cfg.passthrough_rooms else None


def parse_topic(cfg: EspresenseCfg, topic: str) -> tuple[str, str] | Rejection:
    """(device id, room) from ``{prefix}/devices/{id}/{room}``."""
    head = f"{cfg.prefix}/devices/"
    if not topic.startswith(head):
        return Rejection(RejectReason.BAD_TOPIC, f"not under {head}")
    rest = topic[len(head):].split("/")
    if len(rest) != 2 or not rest[0] or not rest[1]:
        return Rejection(RejectReason.BAD_TOPIC, f"need {head}<id>/<room>")
    return rest[0], rest[1]


def decode_espresense(cfg: EspresenseCfg, topic: str, payload: bytes) -> EspSighting | Rejection:
    """Decode one ESPresense report; never raises on bad input."""
    where = parse_topic(cfg, topic)
    if isinstance(where, Rejection):
        return where
    device_id, room = where
    doc = parse_json(payload, cfg.max_bytes)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return Rejection(RejectReason.WRONG_TYPE, "need a JSON object")
    rssi_raw = lookup(doc, "rssi")
    if rssi_raw is MISSING:
        return Rejection(RejectReason.MISSING_FIELD, "rssi")
    rssi = as_number(rssi_raw, "rssi")
    if isinstance(rssi, Rejection):
        return rssi
    if not cfg.rssi_min <= rssi <= cfg.rssi_max:
        return Rejection(RejectReason.OUT_OF_RANGE, f"rssi {rssi} dBm")
    distance: float | None = None
    dist_raw = doc.get("distance")
    if isinstance(dist_raw, int | float) and not isinstance(dist_raw, bool):
        d = as_number(dist_raw, "distance")
        distance = d if isinstance(d, float) and d >= 0 else None
    badge = badge_id(cfg, device_id)
    if badge is None:
        return Rejection(RejectReason.UNKNOWN_DEVICE, device_id[:80])
    receiver = receiver_id(cfg, room)
    if receiver is None:
        return Rejection(RejectReason.UNKNOWN_ROOM, room[:80])
    return EspSighting(device_id=device_id, room=room, badge=badge, receiver=receiver, rssi=rssi, distance=distance)

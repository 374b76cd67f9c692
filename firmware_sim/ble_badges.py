"""Simulated BLE badges.

(a) `MockBluezBadges`: drives python-dbusmock's bluez5 template on a (private) system
    bus the way a real bluetoothd would look to bleak: adapters appear and vanish,
    badge devices appear with their advertisement data, RSSI changes. Used by the tests
    that run bleak's real BlueZ backend. Needs dbus-python (a test dependency; imported
    lazily so the demo part below does not need it).
(b) `BadgeWalk`: an in-process badge source for the demo (no BlueZ): scripted badges
    walk between receivers; RSSI follows a log-distance path-loss curve plus seeded
    noise and packet loss, and `Sighting` events are emitted like the real source does.

Also the frame builders both use: `ibeacon_frame`, `eddystone_uid_frame`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rules.events import Event, Sighting

# Written independently of drivers/ble/codec.py on purpose: the simulator must not share
# the decoder's mistakes.
APPLE_COMPANY_ID = 0x004C
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"


def ibeacon_frame(beacon_uuid: str | uuid.UUID, major: int, minor: int, measured_power: int = -59) -> bytes:
    """Manufacturer data (under 0x004C) of an iBeacon: 02 15 + UUID + major + minor + power."""
    u = beacon_uuid if isinstance(beacon_uuid, uuid.UUID) else uuid.UUID(beacon_uuid)
    return (
        bytes([0x02, 0x15])
        + u.bytes
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + measured_power.to_bytes(1, "big", signed=True)
    )


def eddystone_uid_frame(namespace: bytes, instance: bytes, tx_power: int = -20, reserved: bool = True) -> bytes:
    """Service data (under 0xFEAA) of an Eddystone-UID frame."""
    if len(namespace) != 10 or len(instance) != 6:
        raise ValueError("Eddystone-UID needs a 10-byte namespace and a 6-byte instance")
    out = bytes([0x00]) + tx_power.to_bytes(1, "big", signed=True) + namespace + instance
    return out + (b"\x00\x00" if reserved else b"")


# --------------------------------------------------------------------------- (a) mock BlueZ

_MOCK_IFACE = "org.bluez.Mock"
_DEVICE_IFACE = "org.bluez.Device1"
_PROPS_IFACE = "org.freedesktop.DBus.Properties"
_DBUSMOCK_IFACE = "org.freedesktop.DBus.Mock"
_OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"


class MockBluezBadges:
    """Badges and adapters on dbusmock's bluez5 template, reached at `bus_address`."""

    def __init__(self, bus_address: str) -> None:
        import dbus

        self._dbus: Any = dbus
        self._conn: Any = dbus.bus.BusConnection(bus_address)
        self._mock: Any = dbus.Interface(self._conn.get_object("org.bluez", "/org/bluez"), _MOCK_IFACE)

    def close(self) -> None:
        """Drop the D-Bus connection."""
        self._conn.close()

    def add_adapter(self, name: str = "hci0", system_name: str = "gateway") -> str:
        """Plug in an adapter (powered); returns its object path."""
        return str(self._mock.AddAdapter(name, system_name))

    def remove_adapter(self, name: str = "hci0") -> None:
        """Unplug the adapter: BlueZ drops it and the devices it had seen."""
        self._mock.RemoveAdapterWithDevices(name)

    def set_powered(self, name: str, powered: bool) -> None:
        """Power the adapter off (rfkill, `bluetoothctl power off`) or back on."""
        adapter = self._dbus.Interface(self._conn.get_object("org.bluez", f"/org/bluez/{name}"), _PROPS_IFACE)
        adapter.Set("org.bluez.Adapter1", "Powered", self._dbus.Boolean(powered))

    def add_badge(
        self,
        adapter: str,
        address: str,
        *,
        manufacturer_data: Mapping[int, bytes] | None = None,
        service_data: Mapping[str, bytes] | None = None,
        rssi: int = -60,
        name: str = "badge",
    ) -> str:
        """A badge heard for the first time: the device appears with its advert data at once.

        (The template's AddDevice announces ServiceData as an empty *array*, which bleak
        3.1 cannot read, so the object is built here as bluetoothd would announce it.)
        """
        dbus = self._dbus
        adapter_path = f"/org/bluez/{adapter}"
        path = f"{adapter_path}/dev_{address.replace(':', '_').upper()}"
        props = {
            "Address": dbus.String(address),
            "AddressType": dbus.String("random"),
            "Name": dbus.String(name),
            "Alias": dbus.String(name),
            "UUIDs": dbus.Array([], signature="s"),
            "Paired": dbus.Boolean(False),
            "Connected": dbus.Boolean(False),
            "Trusted": dbus.Boolean(False),
            "Blocked": dbus.Boolean(False),
            "LegacyPairing": dbus.Boolean(False),
            "ServicesResolved": dbus.Boolean(False),
            "Adapter": dbus.ObjectPath(adapter_path),
            "RSSI": dbus.Int16(rssi),
            "ManufacturerData": self._manufacturer(manufacturer_data or {}),
            "ServiceData": self._service(service_data or {}),
        }
        root = dbus.Interface(self._conn.get_object("org.bluez", "/"), _DBUSMOCK_IFACE)
        root.AddObject(path, _DEVICE_IFACE, props, dbus.Array([], signature="(ssss)"))
        root.EmitSignal(
            _OBJECT_MANAGER,
            "InterfacesAdded",
            "oa{sa{sv}}",
            [dbus.ObjectPath(path), dbus.Dictionary({_DEVICE_IFACE: props}, signature="sa{sv}")],
        )
        return path

    def set_rssi(self, path: str, rssi: int) -> None:
        """The badge was heard again at this RSSI (a PropertiesChanged, as BlueZ sends)."""
        self._set(path, "RSSI", self._dbus.Int16(rssi))

    def set_manufacturer_data(self, path: str, data: Mapping[int, bytes]) -> None:
        """Replace the device's ManufacturerData (a{qv})."""
        self._set(path, "ManufacturerData", self._manufacturer(data))

    def set_service_data(self, path: str, data: Mapping[str, bytes]) -> None:
        """Replace the device's ServiceData (a{sv}; must be a dict for bleak)."""
        self._set(path, "ServiceData", self._service(data))

    def _set(self, path: str, prop: str, value: Any) -> None:
        props = self._dbus.Interface(self._conn.get_object("org.bluez", path), _PROPS_IFACE)
        props.Set(_DEVICE_IFACE, prop, value)

    def _manufacturer(self, data: Mapping[int, bytes]) -> Any:
        dbus = self._dbus
        return dbus.Dictionary({dbus.UInt16(k): dbus.Array(v, signature="y") for k, v in data.items()}, signature="qv")

    def _service(self, data: Mapping[str, bytes]) -> Any:
        dbus = self._dbus
        return dbus.Dictionary({dbus.String(k): dbus.Array(v, signature="y") for k, v in data.items()}, signature="sv")


# --------------------------------------------------------------------------- (b) demo walk


@dataclass(frozen=True, slots=True)
class SimReceiver:
    """A receiver at a position on the floor plan (metres)."""

    id: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Waypoint:
    """Where a badge is at scenario time `t` (s); positions in between are interpolated."""

    t: float
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class SimBadge:
    """A scripted badge."""

    badge: str
    """Canonical badge id, as the real source would emit it."""
    path: tuple[Waypoint, ...]
    """Waypoints in increasing time; the badge stays at the last one."""
    measured_power: float = -59.0
    """RSSI at 1 m (dBm)."""

    def position(self, t: float) -> tuple[float, float]:
        """Linear interpolation along the path."""
        pts = self.path
        if t <= pts[0].t:
            return pts[0].x, pts[0].y
        for a, b in itertools.pairwise(pts):
            if t <= b.t:
                f = (t - a.t) / (b.t - a.t) if b.t > a.t else 1.0
                return a.x + f * (b.x - a.x), a.y + f * (b.y - a.y)
        return pts[-1].x, pts[-1].y


class BadgeWalk:
    """Scripted badges heard by scripted receivers, with seeded noise and loss.

    RSSI = measured_power - 10 * n * log10(max(d, 0.5)) + N(0, noise_db); adverts below
    `floor_dbm` are not heard, and each advert is lost with probability `loss`.
    """

    def __init__(
        self,
        receivers: Sequence[SimReceiver],
        badges: Sequence[SimBadge],
        *,
        seed: int = 0,
        path_loss_n: float = 2.2,
        noise_db: float = 2.0,
        loss: float = 0.1,
        floor_dbm: float = -100.0,
    ) -> None:
        self.receivers = tuple(receivers)
        self.badges = tuple(badges)
        self._rng = np.random.default_rng(seed)
        self._n = path_loss_n
        self._noise_db = noise_db
        self._loss = loss
        self._floor = floor_dbm

    def rssi(self, badge: SimBadge, receiver: SimReceiver, t: float) -> float:
        """Noise-free RSSI of `badge` at `receiver` at scenario time `t`."""
        x, y = badge.position(t)
        d = max(math.hypot(x - receiver.x, y - receiver.y), 0.5)
        return badge.measured_power - 10.0 * self._n * math.log10(d)

    def sightings_at(self, t: float, at: float | None = None) -> list[Sighting]:
        """One advertising round at scenario time `t`, stamped `at` (default: `t`)."""
        stamp = t if at is None else at
        out: list[Sighting] = []
        for b in self.badges:
            for r in self.receivers:
                if self._rng.random() < self._loss:
                    continue
                value = self.rssi(b, r, t) + float(self._rng.normal(0.0, self._noise_db))
                if value >= self._floor:
                    out.append(Sighting(badge=b.badge, receiver=r.id, rssi=round(value, 1), at=stamp))
        return out

    async def run(
        self,
        emit: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        period_s: float = 1.0,
        duration_s: float | None = None,
    ) -> None:
        """Emit a round every `period_s` until cancelled (or `duration_s` of scenario time)."""
        start = clock()
        rounds = 0
        while duration_s is None or rounds * period_s <= duration_s:
            now = clock()
            for s in self.sightings_at(now - start, at=now):
                emit(s)
            rounds += 1
            await asyncio.sleep(max(0.0, start + rounds * period_s - clock()))


def demo_walk(seed: int = 0) -> BadgeWalk:
    """The demo floor: three receivers 20 m apart; one worker walks A -> B -> C and back,
    one stays in B, one unknown badge wanders into C (an unknown badge matters)."""
    receivers = (SimReceiver("gw-hci0", 0.0, 0.0), SimReceiver("esp-b", 20.0, 0.0), SimReceiver("esp-c", 40.0, 0.0))
    walker = SimBadge(
        "ibeacon:fda50693-a4e2-4fb1-afcf-c6eb07647825:1:1",
        (
            Waypoint(0, 0, 1),
            Waypoint(30, 0, 1),
            Waypoint(50, 20, 1),
            Waypoint(90, 20, 1),
            Waypoint(110, 40, 1),
            Waypoint(150, 40, 1),
            Waypoint(190, 0, 1),
        ),
    )
    sitter = SimBadge("eddystone:00112233445566778899:000000000002", (Waypoint(0, 19, 2),), measured_power=-62.0)
    stranger = SimBadge(
        "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:7:99",
        (Waypoint(0, 60, 5), Waypoint(60, 60, 5), Waypoint(80, 41, 2), Waypoint(200, 41, 2)),
    )
    return BadgeWalk(receivers, (walker, sitter, stranger), seed=seed)

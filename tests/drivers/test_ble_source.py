"""BleSource through bleak's REAL BlueZ backend, against dbusmock's bluez5 on a private D-Bus.

The clock handed to the source is the test's own, so the presence decisions fed from
these sightings (hysteresis, silence) use injected times while the D-Bus path is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.ble.source import BleSource
from firmware_sim.ble_badges import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    BadgeWalk,
    MockBluezBadges,
    SimBadge,
    SimReceiver,
    Waypoint,
    demo_walk,
    eddystone_uid_frame,
    ibeacon_frame,
)
from rules.events import Event, ReceiverStatus, Rejected, Sighting, Tick
from rules.presence import PresenceCfg, PresenceChange, PresenceState, present_in, step, zone_of
from tests.support.bluez import private_bluez
from tests.support.clock import FakeClock
from tests.support.procs import wait_for

UUID = "fda50693-a4e2-4fb1-afcf-c6eb07647825"
IB_ID = f"ibeacon:{UUID}:1:2"
NS, INST = bytes.fromhex("00112233445566778899"), bytes.fromhex("aabbccddeeff")
ED_ID = f"eddystone:{NS.hex()}:{INST.hex()}"
IB_DATA = {APPLE_COMPANY_ID: ibeacon_frame(UUID, 1, 2, -59)}
ED_DATA = {EDDYSTONE_SERVICE_UUID: eddystone_uid_frame(NS, INST, -20)}


@pytest.fixture
def bluez() -> Iterator[MockBluezBadges]:
    """A private dbus-daemon + mock BlueZ (stopped by pid); DBUS_SYSTEM_BUS_ADDRESS restored after."""
    # Overrides conftest's `bluez`: no adapter here, these tests add and remove adapters themselves.
    with private_bluez() as pb:
        sim = MockBluezBadges(pb.address)
        try:
            yield sim
        finally:
            sim.close()


@contextlib.asynccontextmanager
async def running(*sources: BleSource) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(s.run(), name=f"ble[{s.receiver}]") for s in sources]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def make_source(events: list[Event], receiver: str, adapter: str, clock: FakeClock) -> BleSource:
    return BleSource(
        events.append,
        receiver=receiver,
        adapter=adapter,
        clock=clock.monotonic,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        rng=random.Random(1),
    )


def of(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def feed(state: PresenceState, events: list[Event], cfg: PresenceCfg) -> tuple[PresenceState, list[PresenceChange]]:
    """Drive the pure rule with what the source emitted; `now` = each sighting's own time."""
    changes: list[PresenceChange] = []
    now = 0.0
    for ev in events:
        now = ev.at if isinstance(ev, Sighting) else now
        state, ch = step(state, ev, now, cfg)
        changes.extend(ch)
    return state, changes


async def test_ibeacon_and_eddystone_badges_become_sightings(bluez: MockBluezBadges) -> None:
    bluez.add_adapter("hci0")
    clock, events = FakeClock(mono=100.0), []
    src = make_source(events, "gw-hci0", "hci0", clock)
    async with running(src):
        await wait_for(lambda: src.up is True, timeout=10, what="scanner up")
        ib = bluez.add_badge("hci0", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-55)
        bluez.add_badge("hci0", "C0:00:00:00:00:02", service_data=ED_DATA, rssi=-70)
        bluez.add_badge("hci0", "C0:00:00:00:00:03", manufacturer_data={APPLE_COMPANY_ID: b"\x10\x05\x01"}, rssi=-40)
        bluez.add_badge("hci0", "C0:00:00:00:00:04", rssi=-45)  # a phone with no beacon data at all
        await wait_for(lambda: len(of(events, Sighting)) >= 2, timeout=10, what="two sightings")
        clock.mono = 101.0
        bluez.set_rssi(ib, -65)
        await wait_for(lambda: len(of(events, Sighting)) >= 3, timeout=10, what="RSSI update")
        # the non-beacon devices produced nothing; this proves their adverts were processed
        bluez.add_badge("hci0", "C0:00:00:00:00:05", service_data=ED_DATA, rssi=-99)
        await wait_for(lambda: len(of(events, Sighting)) >= 4, timeout=10, what="marker badge")
    assert events[0] == ReceiverStatus("gw-hci0", True, "")
    assert sorted(of(events, Sighting), key=lambda e: (e.at, e.rssi)) == [  # type: ignore[union-attr]
        Sighting(ED_ID, "gw-hci0", -70.0, 100.0),
        Sighting(IB_ID, "gw-hci0", -55.0, 100.0),
        Sighting(ED_ID, "gw-hci0", -99.0, 101.0),
        Sighting(IB_ID, "gw-hci0", -65.0, 101.0),
    ]
    assert (of(events, Rejected), src.rejected_count) == ([], 0)

    # The sightings locate both badges; silence (injected time) then makes them UNKNOWN.
    cfg = PresenceCfg(receivers={"gw-hci0": "A"})
    state, _ = feed(PresenceState(), events, cfg)
    assert present_in(state, "A", 105.0, cfg) == {IB_ID, ED_ID}
    state, changes = step(state, Tick(), 111.0, cfg)
    assert set(changes) == {PresenceChange(IB_ID, "A", None, 111.0), PresenceChange(ED_ID, "A", None, 111.0)}


async def test_malformed_frames_are_rejected_counted_and_rate_limited(bluez: MockBluezBadges) -> None:
    bluez.add_adapter("hci0")
    clock, events = FakeClock(mono=100.0), []
    src = make_source(events, "gw-hci0", "hci0", clock)
    async with running(src):
        await wait_for(lambda: src.up is True, timeout=10, what="scanner up")
        bad = bluez.add_badge(
            "hci0", "C0:00:00:00:00:0B", manufacturer_data={APPLE_COMPANY_ID: ibeacon_frame(UUID, 1, 2)[:-1]}
        )
        bluez.add_badge("hci0", "C0:00:00:00:00:0C", service_data={EDDYSTONE_SERVICE_UUID: bytes([0x90]) + bytes(19)})
        for rssi in (-61, -62, -63):  # BlueZ repeats the bad frame with every RSSI change
            bluez.set_rssi(bad, rssi)
        await wait_for(lambda: src.rejected_count == 5, timeout=10, what="5 rejected frames counted")
        bluez.add_badge("hci0", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-50)
        await wait_for(lambda: bool(of(events, Sighting)), timeout=10, what="good badge still heard")
    assert of(events, Rejected) == [
        Rejected("ble:gw-hci0:C0:00:00:00:00:0B", "ibeacon_truncated", "22 bytes, expected 23"),
        Rejected("ble:gw-hci0:C0:00:00:00:00:0C", "eddystone_unknown_frame", "frame byte 0x90"),
    ]
    assert of(events, Sighting) == [Sighting(IB_ID, "gw-hci0", -50.0, 100.0)]
    assert src.up is True


async def test_rssi_changes_move_badge_between_zones_with_hysteresis(bluez: MockBluezBadges) -> None:
    bluez.add_adapter("hci0")
    bluez.add_adapter("hci1")
    clock, events = FakeClock(mono=100.0), []
    ra, rb = make_source(events, "rx-a", "hci0", clock), make_source(events, "rx-b", "hci1", clock)
    cfg = PresenceCfg(receivers={"rx-a": "A", "rx-b": "B"})
    clock.mono = 0.0

    def sightings() -> int:
        return len(of(events, Sighting))

    async with running(ra, rb):
        await wait_for(lambda: ra.up is True and rb.up is True, timeout=10, what="both scanners up")
        on_a = bluez.add_badge("hci0", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-50)
        await wait_for(lambda: sightings() == 1, timeout=10, what="heard by A")
        on_b = bluez.add_badge("hci1", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-80)
        await wait_for(lambda: sightings() == 2, timeout=10, what="heard by B")
        # The wearer walks from A towards B: one advert per receiver per second.
        for t in range(1, 7):
            clock.mono = float(t)
            n = sightings()
            bluez.set_rssi(on_a, -80)
            await wait_for(lambda n=n: sightings() == n + 1, timeout=10, what=f"A at t={t}")  # type: ignore[misc]
            bluez.set_rssi(on_b, -40)
            await wait_for(lambda n=n: sightings() == n + 2, timeout=10, what=f"B at t={t}")  # type: ignore[misc]
    state, changes = feed(PresenceState(), events, cfg)
    # EMA(alpha 0.3): B first leads A by >= 6 dB at t=3 (-59.6 vs -69.7), so it switches at t=6.
    assert changes == [PresenceChange(IB_ID, None, "A", 0.0), PresenceChange(IB_ID, "A", "B", 6.0)]
    assert zone_of(state, IB_ID) == "B"


async def test_adapter_loss_makes_every_badge_unknown_then_recovers(bluez: MockBluezBadges) -> None:
    bluez.add_adapter("hci0")
    clock, events = FakeClock(mono=100.0), []
    src = make_source(events, "gw-hci0", "hci0", clock)
    cfg = PresenceCfg(receivers={"gw-hci0": "A"})
    async with running(src):
        await wait_for(lambda: src.up is True, timeout=10, what="scanner up")
        bluez.add_badge("hci0", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-50)
        bluez.add_badge("hci0", "C0:00:00:00:00:02", service_data=ED_DATA, rssi=-60)
        await wait_for(lambda: len(of(events, Sighting)) == 2, timeout=10, what="both badges")
        state, _ = feed(PresenceState(), events, cfg)
        assert present_in(state, "A", 100.0, cfg) == {IB_ID, ED_ID}

        mark = len(events)
        clock.mono = 101.0
        bluez.remove_adapter("hci0")  # the USB dongle is pulled
        await wait_for(lambda: src.up is False, timeout=10, what="receiver down")
        down = events[mark:]
        assert down == [ReceiverStatus("gw-hci0", False, "adapter_removed: /org/bluez/hci0 removed")]
        state, changes = step(state, down[0], 101.0, cfg)
        assert set(changes) == {PresenceChange(IB_ID, "A", None, 101.0), PresenceChange(ED_ID, "A", None, 101.0)}
        assert present_in(state, "A", 101.0, cfg) == frozenset()

        clock.mono = 120.0
        bluez.add_adapter("hci0")  # plugged back in
        await wait_for(lambda: src.up is True, timeout=10, what="receiver back")
        bluez.add_badge("hci0", "C0:00:00:00:00:01", manufacturer_data=IB_DATA, rssi=-52)
        await wait_for(lambda: len(of(events, Sighting)) == 3, timeout=10, what="heard again")
        state, changes = feed(state, events[mark + 1 :], cfg)
    assert [e for e in events if isinstance(e, ReceiverStatus)] == [
        ReceiverStatus("gw-hci0", True, ""),
        ReceiverStatus("gw-hci0", False, "adapter_removed: /org/bluez/hci0 removed"),
        ReceiverStatus("gw-hci0", True, ""),
    ]
    assert changes == [PresenceChange(IB_ID, None, "A", 120.0)]
    assert present_in(state, "A", 120.0, cfg) == {IB_ID}  # the Eddystone badge stays UNKNOWN: unheard


async def test_missing_then_powered_off_adapter_reported_once_each(bluez: MockBluezBadges) -> None:
    clock, events = FakeClock(mono=100.0), []
    src = make_source(events, "gw-hci0", "hci0", clock)
    async with running(src):
        await wait_for(lambda: src.up is False, timeout=10, what="no adapter at start")
        await wait_for(lambda: src.attempts >= 3, timeout=10, what="retries (must not repeat the report)")
        bluez.add_adapter("hci0")
        await wait_for(lambda: src.up is True, timeout=10, what="adapter appears")
        bluez.set_powered("hci0", False)
        await wait_for(lambda: src.up is False, timeout=10, what="powered off")
        tried = src.attempts
        await wait_for(lambda: src.attempts >= tried + 2, timeout=10, what="retries while powered off")
        bluez.set_powered("hci0", True)
        await wait_for(lambda: src.up is True, timeout=10, what="powered on")
    statuses = [(e.up, e.reason.split(":")[0]) for e in events if isinstance(e, ReceiverStatus)]
    assert statuses == [(False, "adapter_missing"), (True, ""), (False, "powered_off"), (True, "")]


async def test_no_system_bus_is_reported_down(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    events: list[Event] = []
    src = make_source(events, "gw-hci0", "hci0", FakeClock(mono=100.0))
    async with running(src):
        await wait_for(lambda: src.up is False, timeout=10, what="down without a bus")
    assert len(events) == 1 and isinstance(events[0], ReceiverStatus)
    assert events[0].reason.startswith("bluez_unavailable: ")


def test_demo_walk_is_reproducible_and_locates_the_walker() -> None:
    """The in-process demo source: seeded noise, and the presence rule follows the script."""
    assert demo_walk(seed=3).sightings_at(12.0) == demo_walk(seed=3).sightings_at(12.0)
    assert demo_walk(seed=3).sightings_at(12.0) != demo_walk(seed=4).sightings_at(12.0)
    walk = demo_walk(seed=7)
    cfg = PresenceCfg(receivers={"gw-hci0": "A", "esp-b": "B", "esp-c": "C"})
    walker, sitter, stranger = (b.badge for b in walk.badges)
    state, moves = PresenceState(), []
    for t in range(200):
        for ev in (*walk.sightings_at(float(t)), Tick()):
            state, changes = step(state, ev, float(t), cfg)
            moves += [(c.at, c.new_zone) for c in changes if c.badge == walker]
    # Walker: A (t<30) -> B (t 50-90) -> C (t 110-150) -> back to A at t=190, through B.
    # Each switch comes after the midpoint between receivers (hysteresis), within 15 s.
    assert [z for _, z in moves] == ["A", "B", "C", "B", "A"]
    midpoints = [0.0, 40.0, 100.0, 160.0, 180.0]
    assert all(m <= at <= m + 15 for (at, _), m in zip(moves, midpoints, strict=True))
    assert (zone_of(state, sitter), zone_of(state, stranger)) == ("B", "C")


def test_badge_walk_loss_and_floor() -> None:
    rx = (SimReceiver("r", 0.0, 0.0),)
    near = SimBadge("ibeacon:00000000-0000-0000-0000-000000000001:0:0", (Waypoint(0, 1, 0),))
    far = SimBadge("ibeacon:00000000-0000-0000-0000-000000000002:0:0", (Waypoint(0, 5000, 0),))
    walk = BadgeWalk(rx, (near, far), seed=1, loss=0.0, noise_db=0.0)
    assert walk.sightings_at(1.0) == [Sighting(near.badge, "r", -59.0, 1.0)]
    silent = BadgeWalk(rx, (near,), seed=1, loss=1.0)
    assert silent.sightings_at(1.0) == []

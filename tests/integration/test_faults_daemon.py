"""Faults of the box itself, over the real components, with the daemon in this process.

(a) The BLE adapter disappears while hot work is released: the receiver goes down, every
    badge it heard becomes UNKNOWN, the ignition relay drops and the permit's checklist
    says why. When the adapter comes back and the badges are heard again, release needs a
    fresh face verification, and then happens.
(b) The disk under the outbox fills up: a gas alarm still drops the relay and is published
    over MQTT, the records fault is loud (/api/state and /metrics), and nothing the outbox
    had already accepted is lost; once space is back the queued records are written too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.ble_badges import MockBluezBadges
from firmware_sim.face_terminal import FaceTerminalSim
from gateway.app.daemon import Daemon
from gateway.config.loader import load
from gateway.ledger.outbox import Outbox
from tests.support.daemon import running
from tests.support.hotwork import (
    WATCH,
    WELDER,
    all_but_face,
    api_state,
    crew_walking,
    face,
    hw7_checklist,
    setup_config,
)
from tests.support.plant import ALARM_TOPIC, BEACON, HORN, IGNITION, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- (a) BLE adapter lost


async def test_ble_adapter_lost_during_released_hot_work_drops_ignition_until_back_and_new_face(
    bluez: MockBluezBadges, broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg_path = setup_config(p, tmp_path)
        now = int(time.time())
        p.bay.set_dates(now - 3600, now - 30 * 86400)  # bump-tested today, calibrated a month ago
        d = Daemon(load(cfg_path), base=tmp_path)
        run = asyncio.create_task(d.run())
        term = FaceTerminalSim("ft-bay2", "hmac-sha256", bytes(range(32)))
        port = p.http_port
        try:
            async with crew_walking(bluez):
                await wait_for(lambda: all_but_face(port), 20, interval=0.2, what="all but the face hold")
                assert await face(term, port) == 202
                await wait_for(lambda: p.relay.coils[IGNITION], 5, what="ignition released")

                # The adapter is unplugged (BlueZ drops it and every device it had seen).
                await asyncio.to_thread(bluez.remove_adapter, "hci0")
                await wait_for(lambda: not p.relay.coils[IGNITION], 5, what="ignition dropped on adapter loss")
                await wait_for(lambda: "gw-hci0" in d.state.plant.presence.down, 1, what="receiver down")
                state = await api_state(port)
                assert state["presence"]["receivers_down"] == ["gw-hci0"]
                bay = next(z for z in state["presence"]["zones"] if z["zone"] == "bay-2")
                assert bay["inside"] == []  # every badge UNKNOWN: nobody located anywhere
                checks = hw7_checklist(state)
                for who, name in ((WELDER[0], "operator_present"), (WATCH[0], "fire_watch_present")):
                    assert checks[name]["ok"] is False and who in checks[name]["reason"], checks[name]
                permit = next(x for x in state["permits"] if x["id"] == "HW-7")
                assert permit["released"] is False and permit["trip_reasons"], permit
                steps = d.state.steps
                await wait_for(lambda: d.state.steps > steps + 10, 5, what="engine stepping while down")
                assert not p.relay.coils[IGNITION]

            # The adapter comes back; the badges are heard again.
            await asyncio.to_thread(bluez.add_adapter, "hci0")
            async with crew_walking(bluez):
                await wait_for(lambda: not d.state.plant.presence.down, 15, what="receiver up again")
                await wait_for(lambda: all_but_face(port), 15, interval=0.2, what="crew located again")
                assert not p.relay.coils[IGNITION]  # the trip latched: a fresh face is needed
                checks = hw7_checklist(await api_state(port))
                assert not (checks["face_verified"]["ok"] and checks["rearm"]["ok"]), checks
                assert await face(term, port) == 202
                await wait_for(lambda: p.relay.coils[IGNITION], 5, what="released again after a new face")
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0
        assert not p.relay.coils[IGNITION]


# --------------------------------------------------------------------------- (b) disk full


class SmallDisk:
    """A tiny tmpfs for the state dir (root only), filled and freed on demand."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler.bin"

    def fill(self) -> None:
        """Write until the file system refuses (ENOSPC): every block is taken."""
        with open(self.filler, "ab", buffering=0) as f:
            for size in (65536, 4096, 512, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        f.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(size: str = "2m") -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("a full file system needs a tmpfs mount (root); run as root as .ci/run does")
    mp = Path(tempfile.mkdtemp(prefix="edge-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mp)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        mp.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallDisk(mp)
    finally:
        subprocess.run(["umount", str(mp)], check=False)
        if subprocess.run(["mountpoint", "-q", str(mp)], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(mp)], check=False)
        mp.rmdir()


async def _metric(port: int, name: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


async def test_disk_full_under_the_outbox_alarm_still_acts_fault_is_loud_nothing_accepted_is_lost(
    broker: Mosquitto, tmp_path: Path
) -> None:
    with small_disk() as disk:
        state_dir = disk.mountpoint / "state"
        async with plant(broker.port, state_dir) as p:
            async with running(p, broker) as (d, sub):
                await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
                ob = d.records.outbox
                assert ob is not None and d.records.fault == ""

                # Before the fault: a bay-2 LEL alarm gives a hazard the outbox accepts.
                p.bay.set_value("lel", 15.0)
                await wait_for(lambda: ob.depth() >= 1, 5, what="hazard accepted by the outbox")
                before = {r.key: r.body["title"] for r in await ob.list()}
                assert any("lel" in t for t in before.values()), before

                disk.fill()
                # The tank's O2 falls: the alarm acts with no disk at all.
                p.tank.set_value("o2", 18.5)
                await wait_for(lambda: not p.relay.coils[PERMISSIVE] and p.relay.coils[HORN] and p.relay.coils[BEACON],
                               5, what="relay dropped, horn and beacon on")  # fmt: skip
                await wait_for(lambda: sub.last.get(ALARM_TOPIC, {}).get("severity") == "evacuate", 5, what="mqtt")
                await wait_for(lambda: d.records.fault != "", 5, what="records fault raised")
                fault = d.records.fault
                assert "full" in fault or "No space left" in fault, fault
                state = await api_state(p.http_port)
                assert state["outbox"]["fault"] == fault and state["outbox"]["queued"] >= 1, state["outbox"]
                assert await _metric(p.http_port, "edge_records_fault") == 1.0
                assert {r.key for r in await ob.list()} >= set(before)  # what was accepted is still there

                # Space again: the writer catches up by itself, the fault clears, nothing was dropped.
                disk.free()
                await wait_for(lambda: d.records.fault == "", 10, what="records fault cleared")
                assert await _metric(p.http_port, "edge_records_fault") == 0.0
                await wait_for(lambda: ob.depth() >= len(before) + 1, 5, what="queued hazard written")
                assert not p.relay.coils[PERMISSIVE]  # still latched; the disk changed nothing there

            # On restart, the outbox holds every record: the one accepted before and the one queued during.
            async with Outbox(state_dir / "outbox.db") as again:
                after = {r.key: r.body["title"] for r in await again.list()}
        assert set(before) <= set(after), (before, after)
        assert any("o2" in t and "tank-t101" in t for t in after.values()), after
        assert len(after) == len(set(after.values())), after  # no record twice after the retries

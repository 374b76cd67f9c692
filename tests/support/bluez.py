"""A private system D-Bus with python-dbusmock's bluez5 template, for BLE tests.

bleak's real BlueZ backend connects to whatever DBUS_SYSTEM_BUS_ADDRESS names, so the
tests point it at a dbus-daemon of their own (never the machine's system bus). Both
processes are started here and stopped by their pid; the variable is restored after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.support.procs import stop_pid

if TYPE_CHECKING:
    from firmware_sim.ble_badges import MockBluezBadges


@dataclass
class PrivateBluez:
    """A running mock BlueZ: `address` is the bus, `mock` the dbusmock process."""

    address: str
    bus: subprocess.Popen[str]
    mock: subprocess.Popen[bytes]


def _wait_bluez(address: str, timeout: float) -> None:
    import dbus

    conn = dbus.bus.BusConnection(address)
    try:
        deadline = time.monotonic() + timeout
        while not conn.name_has_owner("org.bluez"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"dbusmock bluez5 did not own org.bluez on {address} within {timeout} s")
            time.sleep(0.02)
    finally:
        conn.close()


@contextmanager
def private_bluez(timeout: float = 10.0) -> Iterator[PrivateBluez]:
    """Start dbus-daemon + `python -m dbusmock --system --template bluez5`; yield; stop both by pid.

    DBUS_SYSTEM_BUS_ADDRESS points at the private bus only inside the `with` block.
    """
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise RuntimeError("dbus-daemon is not installed: apt-get install -y dbus (.ci/run does this)")
    bus = subprocess.Popen(
        [exe, "--session", "--print-address=1", "--nofork"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # "failed to set fd limit" noise when not root-capable
        text=True,
    )
    saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    mock: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        if not address:
            raise RuntimeError("dbus-daemon printed no address")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        mock = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_bluez(address, timeout)
        yield PrivateBluez(address=address, bus=bus, mock=mock)
    finally:
        if saved is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved
        if mock is not None:
            stop_pid(mock)
        stop_pid(bus)
        if bus.stdout is not None:
            bus.stdout.close()


@contextmanager
def bluez_with_adapter(adapter: str = "hci0") -> Iterator[MockBluezBadges]:
    """A private mock BlueZ with one adapter, ready for badges (DBUS_SYSTEM_BUS_ADDRESS set inside)."""
    from firmware_sim.ble_badges import MockBluezBadges

    with private_bluez() as pb:
        sim = MockBluezBadges(pb.address)
        sim.add_adapter(adapter)
        try:
            yield sim
        finally:
            sim.close()

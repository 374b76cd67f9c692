"""Helpers for the Modbus tests: a socat pty pair (stopped by pid) and device specs for the sims."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drivers.modbus import DataType, DeviceSpec, PointSpec, StatusSpec, Table
from rules.events import DeviceStatus, Event, Quality, Reading
from tests.support.procs import stop_pid


@contextmanager
def pty_pair(timeout: float = 5.0) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals made by socat: (end A, end B). socat is stopped by its pid."""
    exe = shutil.which("socat")
    if exe is None:
        raise RuntimeError("socat is not installed: apt-get install -y socat")
    with tempfile.TemporaryDirectory(prefix="mbpty-") as d:
        a, b = Path(d) / "ttyA", Path(d) / "ttyB"
        proc = subprocess.Popen(
            [exe, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout
            while not (a.exists() and b.exists()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"socat made no pty pair within {timeout} s (exit {proc.poll()})")
                time.sleep(0.01)
            yield str(a), str(b)
        finally:
            stop_pid(proc)


GAS_POINTS = (
    PointSpec("o2", Table.HOLDING, 1, DataType.INT16, scale=0.1, unit="%vol"),
    PointSpec("lel", Table.HOLDING, 2, DataType.INT16, scale=0.1, unit="%LEL"),
    PointSpec("h2s", Table.HOLDING, 3, DataType.INT16, scale=0.1, unit="ppm"),
    PointSpec("co", Table.HOLDING, 4, DataType.INT16, scale=0.1, unit="ppm"),
    PointSpec("o2_f", Table.HOLDING, 5, DataType.FLOAT32, unit="%vol"),
)
GAS_STATUS = StatusSpec(
    0, bump_address=10, calibration_address=12, bump_signal="gas.bump", calibration_signal="gas.cal"
)


def gas_spec(**kw: Any) -> DeviceSpec:
    """A fast-polling spec for GasDetectorSim; pass port= (tcp) or transport/serial_port (rtu)."""
    base: dict[str, Any] = {
        "id": "gas-1", "transport": "tcp", "host": "127.0.0.1", "poll_s": 0.05, "timeout_s": 0.25,
        "retries": 0, "points": GAS_POINTS, "status": GAS_STATUS, "backoff_cap_s": 0.2,
    }
    base.update(kw)
    return DeviceSpec(**base)


class Recorder:
    """Collects emitted events; small queries for tests."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def readings(self, signal: str) -> list[Reading]:
        return [e for e in self.events if isinstance(e, Reading) and e.signal == signal]

    def last(self, signal: str) -> Reading | None:
        r = self.readings(signal)
        return r[-1] if r else None

    def last_is(self, signal: str, quality: Quality, reason: str = "") -> bool:
        r = self.last(signal)
        return r is not None and r.quality is quality and (not reason or r.reason == reason)

    def statuses(self) -> list[DeviceStatus]:
        return [e for e in self.events if isinstance(e, DeviceStatus)]

    def clear(self) -> None:
        self.events.clear()

"""A real VictoriaMetrics for tests: a free loopback port, a temporary data dir, stopped by its pid.

VictoriaMetrics serves InfluxDB's ``/api/v2/write`` (what influxdb-client posts to) and
gives points back from ``/api/v1/export`` as one JSON object per series:
``{"metric": {"__name__": "gas_o2", "zone": ...}, "values": [...], "timestamps": [ms, ...]}``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import free_port, stop_pid, wait_port

__all__ = ["Victoria", "victoria"]


def _exe() -> str:
    exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(exe).exists():
        raise RuntimeError("victoria-metrics is not installed: apt-get install -y victoria-metrics")
    return exe


@dataclass
class Victoria:
    port: int
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (again) on the same port and data dir."""
        if self.running:
            return
        self.proc = subprocess.Popen(
            [
                _exe(),
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data}",
                "-loggerLevel=ERROR",
                # Keep the test's own samples whatever their age or future offset (the wall clock is what it is).
                "-retentionPeriod=100y",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, timeout=15.0)

    def stop(self) -> None:
        """SIGTERM by pid (VictoriaMetrics flushes what it accepted), then wait."""
        if self.proc is not None:
            stop_pid(self.proc)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching a selector, e.g. ``{__name__=~"gas_.*"}``, after forcing pending data visible.

        Blocking (urllib): call it through asyncio.to_thread from async tests.
        """
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as resp:
            text = resp.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def count(self, match: str) -> int:
        """How many samples match the selector."""
        return sum(len(s["values"]) for s in self.export(match))


@contextmanager
def victoria(start: bool = True) -> Iterator[Victoria]:
    """A VictoriaMetrics on a free loopback port; `start=False` reserves the port and data dir only."""
    with tempfile.TemporaryDirectory(prefix="vm-") as d:
        vm = Victoria(port=free_port(), data=Path(d))
        try:
            if start:
                vm.start()
            yield vm
        finally:
            vm.stop()

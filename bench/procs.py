"""Processes of a bench run: mosquitto, the gateway daemon, helpers; all on 127.0.0.1, stopped by pid.

free_port, stop_pid, wait_port and the mosquitto launcher are firmware_sim.procs, shared with the tests.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from firmware_sim import procs
from firmware_sim.procs import free_port, stop_pid

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
DAEMON_CPU, OTHERS_CPU = "0", "1"
"""The daemon runs alone on core 0; sims, broker, load generator and sink share core 1."""


class BenchError(Exception):
    """A bench step could not run: `step` names it, `reason` says why."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"{step}: {reason}")


def wait_port(port: int, timeout: float = 10.0) -> None:
    try:
        procs.wait_port(port, timeout, interval=0.02)
    except TimeoutError as exc:
        raise BenchError("wait_port", str(exc)) from None


def pinned(cpu: str, args: list[str]) -> list[str]:
    """`taskset -c cpu args` when taskset exists and the machine has 2+ cores."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *args]
    return args


def cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise BenchError("rss", f"no {key} for pid {pid}")


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))
    return round(v[k], 2)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": round(max(values), 2) if values else None}


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(procs.mosquitto_conf(self.port, "max_queued_messages 100000\nset_tcp_nodelay true"))
        try:
            self.proc = procs.spawn_mosquitto(conf, wrap=lambda args: pinned(OTHERS_CPU, args))
        except procs.NotInstalled:
            raise BenchError("mosquitto", "not installed: apt-get install -y mosquitto") from None
        wait_port(self.port)

    def stop(self) -> None:
        stop_pid(self.proc)


class Victoria:
    """VictoriaMetrics as the TSDB the daemon batches readings to (InfluxDB line protocol), on core 1."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(exe).exists():
            raise BenchError("victoria-metrics", "not installed: apt-get install -y victoria-metrics")
        self.port = free_port()
        self.proc = subprocess.Popen(
            pinned(OTHERS_CPU, [exe, f"-httpListenAddr=127.0.0.1:{self.port}",
                                f"-storageDataPath={workdir / 'vm-data'}", "-loggerLevel=ERROR",
                                "-retentionPeriod=100y"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, timeout=15.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_pid(self.proc)


class SimHost:
    """The field process (bench.simhost), driven over its stdin/stdout."""

    def __init__(self, mqtt_port: int) -> None:
        self.proc = subprocess.Popen(
            pinned(OTHERS_CPU, [sys.executable, "-m", "bench.simhost", "--mqtt-port", str(mqtt_port)]),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        hello = self._read(15)
        self.gas_port, self.relay_port = int(hello["gas_port"]), int(hello["relay_port"])

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        import select

        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise BenchError("simhost", f"no answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("simhost", f"exited with {self.proc.wait(5)}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def call(self, timeout: float, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_pid(self.proc)


class Daemon:
    """`python -m gateway.app.cli run --config FILE`, pinned to core 0, READY over a NOTIFY_SOCKET we bind."""

    def __init__(self, config: Path, http_port: int, log: Path, prefix: list[str] | None = None,
                 duration: float | None = None) -> None:
        self.http_port = http_port
        self._dir = tempfile.mkdtemp(prefix="bench-notify-")
        self.notify_path = os.path.join(self._dir, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = self.notify_path
        args = [*(prefix or [sys.executable]), "-m", "gateway.app.cli", "--log-level", "info", "run",
                "--config", str(config)]
        if duration is not None:
            args += ["--duration", str(duration)]
        self._log: IO[bytes] = log.open("ab")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(pinned(DAEMON_CPU, args), cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.t_ready: float | None = None

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Monotonic time the READY=1 datagram arrived."""
        deadline = time.monotonic() + timeout
        while self.t_ready is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise BenchError("daemon", f"no READY=1 within {timeout} s (exit code {self.proc.poll()})")
            self.notify.settimeout(min(left, 0.5))
            try:
                msg = self.notify.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in msg.split(b"\n"):
                self.t_ready = time.monotonic()
        return self.t_ready

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/state", timeout=10) as r:
            doc: dict[str, Any] = json.loads(r.read())
        return doc

    def steps(self) -> int:
        return int(self.state()["engine"]["steps"])

    def readings(self) -> int:
        """Readings through the engine (telemetry is applied in batches: many readings per step)."""
        return int(self.state()["engine"]["readings"])

    def stop(self) -> None:
        stop_pid(self.proc, timeout=10)
        self._log.close()
        self.notify.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class Gen:
    """One load-generator process (bench.mqttload gen) on the others' core."""

    def __init__(self, port: int, rate: float, seconds: float, signals: int, topic: str = "bench/load/{i}") -> None:
        self.proc = subprocess.Popen(
            pinned(OTHERS_CPU, [sys.executable, "-m", "bench.mqttload", "gen", "--port", str(port), "--rate",
                                str(rate), "--seconds", str(seconds), "--signals", str(signals), "--topic", topic]),
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        self.seconds = seconds

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=self.seconds + 30)
        if self.proc.returncode != 0 or not out.strip():
            raise BenchError("loadgen", f"exit {self.proc.returncode}")
        doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return doc


class Sink:
    """One counting subscriber (bench.mqttload sink)."""

    def __init__(self, port: int, topic_filter: str, seconds: float, tb: bool = False) -> None:
        args = [sys.executable, "-m", "bench.mqttload", "sink", "--port", str(port), "--filter", topic_filter,
                "--seconds", str(seconds)] + (["--tb"] if tb else [])
        self.proc = subprocess.Popen(pinned(OTHERS_CPU, args), cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # {"subscribed": true}
        self.seconds = seconds

    def result(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return doc

"""Real servers for tests: started on free loopback ports, stopped by their pid."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")


def stop_pid(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 5.0) -> None:
    """Stop a process we started, by its pid: TERM, then KILL."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@dataclass
class Mosquitto:
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_pid(self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self) -> None:
        """Start again on the same port (after stop or kill)."""
        self.stop()
        self.proc = _spawn_mosquitto(self.conf)
        wait_port(self.port)


def _spawn_mosquitto(conf: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto is not installed: apt-get install -y mosquitto (.ci/run does this)")
    return subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def mosquitto(extra_conf: str = "") -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, anonymous unless `extra_conf` says otherwise."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mosq-") as d:
        conf = Path(d) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}\n")
        proc = _spawn_mosquitto(conf)
        broker = Mosquitto(port=port, proc=proc, conf=conf)
        try:
            wait_port(port)
            yield broker
        finally:
            broker.stop()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """Wait on a condition with a timeout (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {what or predicate}")
        await asyncio.sleep(interval)

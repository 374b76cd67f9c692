"""Processes around the simulated plant, shared by the tests (tests/support/procs.py) and the
bench (bench/procs.py): free loopback ports, waiting for a listener, stopping a process we
started by its pid, and a mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class NotInstalled(RuntimeError):
    """A program the simulated plant needs is missing; the message names the package."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1", interval: float = 0.05) -> None:
    """Return once something accepts connections on host:port; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(interval)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")


def stop_pid(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a process we started, by its pid: TERM, then KILL."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def mosquitto_conf(port: int, extra: str = "") -> str:
    """A mosquitto configuration: one anonymous listener on 127.0.0.1:port, no persistence, then `extra`."""
    return f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}\n"


def spawn_mosquitto(
    conf: Path, wrap: Callable[[list[str]], list[str]] | None = None
) -> subprocess.Popen[bytes]:
    """`mosquitto -c conf`, its output discarded; `wrap` may prefix the command (taskset, ...).
    Raises NotInstalled when there is no mosquitto."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise NotInstalled("mosquitto is not installed: apt-get install -y mosquitto")
    args = [exe, "-c", str(conf)]
    return subprocess.Popen(wrap(args) if wrap else args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

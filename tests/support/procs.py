"""Real servers for tests: started on free loopback ports, stopped by their pid.

free_port, wait_port, stop_pid and the mosquitto launcher are firmware_sim.procs, shared with the bench.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.procs import free_port, mosquitto_conf, spawn_mosquitto, stop_pid, wait_port

__all__ = ["Mosquitto", "free_port", "mosquitto", "stop_pid", "wait_for", "wait_port"]


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
        self.proc = spawn_mosquitto(self.conf)
        wait_port(self.port)


@contextmanager
def mosquitto(extra_conf: str = "") -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, anonymous unless `extra_conf` says otherwise."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mosq-") as d:
        conf = Path(d) / "mosquitto.conf"
        conf.write_text(mosquitto_conf(port, extra_conf))
        proc = spawn_mosquitto(conf)
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

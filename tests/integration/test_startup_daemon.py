""""Ready" means running (issue 16.3): a failure at start exits 1 within 5 s with one line that
names the cause and the fix, never READY=1, never exit 0; the outputs are safe either way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app.daemon import Daemon
from gateway.app.sdnotify import Notifier
from tests.support.notify import NotifySocket
from tests.support.plant import ROOT, Plant, plant
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def port_taken(port: int) -> Iterator[socket.socket]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    try:
        yield s
    finally:
        s.close()


async def start_fails(p: Plant, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """Run the daemon; it must return 1 within 5 s without READY=1. The stderr line and the
    notifications come back."""
    ns = NotifySocket(tmp_path / "notify")
    try:
        d = Daemon(p.config(), notifier=Notifier(ns.path))
        t0 = time.monotonic()
        code = await asyncio.wait_for(d.run(), 20)
        took = time.monotonic() - t0
        assert code == 1
        assert took < 5.0, f"start failure took {took:.1f} s"
        await asyncio.sleep(0)
        assert "READY=1" not in ns.lines()
        assert not d.ready
    finally:
        ns.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    return err[-1], ns.lines()


async def test_status_port_in_use_exits_1_naming_the_port(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        with port_taken(p.http_port):
            line, _ = await start_fails(p, tmp_path, capsys)
        want = f"edge-gateway: cannot start: the status server cannot listen on 127.0.0.1:{p.http_port}"
        assert line.startswith(want), line
        assert "Fix: " in line and "status.port" in line
        assert not any(p.relay.coils)  # written safe at start, and again on the way out


async def test_relay_module_away_at_start_exits_1_naming_the_module(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        await p.relay.stop()
        line, _ = await start_fails(p, tmp_path, capsys)
        assert "outputs not confirmed safe" in line and f"relay-1 at 127.0.0.1:{p.relay.port}" in line, line
        assert "watchdog holds its outputs de-energized" in line


async def test_unwritable_state_directory_exits_1(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    async with plant(broker.port, tmp_path / "a-file" / "state") as p:
        line, _ = await start_fails(p, tmp_path, capsys)
        assert "state directory" in line and "is not writable" in line and "install -d" in line, line


async def test_broker_tls_files_that_do_not_load_exit_1(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file is refused by the config check (exit 2); one that is there but is no
    certificate is found at start."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    async with plant(broker.port, tmp_path / "state") as p:
        p.raw["mqtt"]["url"] = f"mqtts://127.0.0.1:{broker.port}"
        p.raw["mqtt"]["tls"] = {"ca_file": str(tmp_path / "ca.pem")}
        line, _ = await start_fails(p, tmp_path, capsys)
        assert "TLS files do not load" in line and "mqtt.tls.ca_file" in line, line


async def test_the_cli_says_it_in_one_line_and_exits_1(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        with port_taken(p.http_port):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.app.cli", "--log-level", "error", "run", "--config", str(cfg),
                cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": ""},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out: Any
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1, (out, err)
        lines = err.decode().strip().splitlines()
        assert lines[-1].startswith("edge-gateway: cannot start: the status server cannot listen"), lines
        assert "Traceback" not in err.decode()

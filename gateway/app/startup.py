"""What must be true before the gateway says "ready": each check names the cause and the fix.

The daemon runs these in order at start (outputs safe first, then the state directory, the
broker's TLS files, the status listener). The first that fails ends the start with exit 1
and one line on stderr and in the journal; systemd starts the gateway again 2 s later while
the relay module's own watchdog holds every output de-energized. "Ready" (sd_notify READY=1,
`gateway_ready`) is said only after all of them passed and the engine has run a cycle.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.northbound.mqtt_out import broker_tls

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.core.outputs import OutputBank
    from gateway.status.web import StatusServer

START_OUTPUTS_S = 4.0
"""Longest wait for every output to be written safe and read back at start (the whole start
must fail within 5 s when something is missing)."""


@dataclass(frozen=True, slots=True)
class StartFailure:
    """Why the gateway did not start, for one line of stderr and the journal."""

    cause: str
    fix: str

    def line(self) -> str:
        return f"edge-gateway: cannot start: {self.cause}. Fix: {self.fix}"


async def confirm_outputs(bank: OutputBank, cfg: GatewayConfig) -> StartFailure | None:
    """Every coil written safe and read back safe, within START_OUTPUTS_S."""
    try:
        async with asyncio.timeout(START_OUTPUTS_S):
            if await bank.write_safe_all():
                return None
    except TimeoutError:
        pass
    unconfirmed = sorted(oid for oid, o in bank.outputs.items() if bank.observed.get(oid) != o.safe)
    modules = sorted({bank.outputs[oid].module for oid in unconfirmed} or set(bank.modules))
    where = ", ".join(f"{m} at {_address(cfg, m)}" for m in modules)
    return StartFailure(
        f"outputs not confirmed safe ({', '.join(unconfirmed) or 'watchdog registers'}) on relay module {where}",
        "check the module's power, network or serial wiring and unit id; its own watchdog holds its outputs "
        "de-energized meanwhile",
    )


def _address(cfg: GatewayConfig, device: str) -> str:
    d = cfg.device(device)
    return str(d.serial_port) if d.transport == "modbus_rtu" else f"{d.host}:{d.port}"


def check_state_dir(path: Path) -> StartFailure | None:
    """The state directory exists (created if missing) and a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return StartFailure(
            f"state directory {path} is not writable ({exc.strerror or exc})",
            f"create it and give it to the service user: install -d -o edge-gateway -m 0750 {path} "
            "(or set state.dir)",
        )
    return None


def check_broker_tls(cfg: GatewayConfig, base: Path) -> StartFailure | None:
    """For mqtts://, the CA and client certificate files load."""
    try:
        broker_tls(cfg.mqtt, base)
    except (OSError, ssl.SSLError) as exc:
        return StartFailure(
            f"the MQTT broker's TLS files do not load ({exc})",
            "check mqtt.tls.ca_file, cert_file and key_file (paths relative to the config file, readable by "
            "the service user)",
        )
    return None


async def bind_status(server: StatusServer, bind: str, port: int) -> StartFailure | None:
    """The status page's listener is bound."""
    try:
        await server.start()
    except OSError as exc:
        return StartFailure(
            f"the status server cannot listen on {bind}:{port} ({exc.strerror or exc})",
            f"another process holds the port (ss -ltnp 'sport = :{port}'): stop it, or set status.port",
        )
    return None


__all__ = ["START_OUTPUTS_S", "StartFailure", "bind_status", "check_broker_tls", "check_state_dir", "confirm_outputs"]

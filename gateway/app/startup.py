"""What must be true before the gateway says "ready": each check names the cause and the fix.

The daemon runs these in order at start (outputs safe first, then the state directory, the
broker's TLS files, the status listener). The first that fails ends the start with exit 1
and one line on stderr and in the journal; systemd starts the gateway again 2 s later while
the relay module's own watchdog holds every output de-energized. "Ready" (sd_notify READY=1,
`gateway_ready`) is said only after all of them passed and the engine has run a cycle.
Before the daemon is even imported, `edge-gateway run` writes every output safe (SafeFirst, below).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from drivers.modbus.spec import DeviceSpec
    from gateway.config import GatewayConfig
    from gateway.core.outputs import OutputBank, OutputsPlan
    from gateway.status.web import StatusServer

log = structlog.get_logger("startup")

# This module is on the path to the first safe write (SafeFirst, below, run by the CLI before the
# daemon is even imported): nothing heavy at import time; a later check imports what it needs.

START_OUTPUTS_S = 4.0
"""Longest wait for every output to be written safe and read back at start (the whole start
must fail within 5 s when something is missing). The CLI's first safe write and the daemon's
confirmation share it."""


@dataclass(frozen=True, slots=True)
class StartFailure:
    """Why the gateway did not start, for one line of stderr and the journal."""

    cause: str
    fix: str

    def line(self) -> str:
        return f"edge-gateway: cannot start: {self.cause}. Fix: {self.fix}"


async def confirm_outputs(
    bank: OutputBank, cfg: GatewayConfig, within_s: float = START_OUTPUTS_S
) -> StartFailure | None:
    """Every coil written safe and read back safe, within `within_s` (START_OUTPUTS_S, or what the
    CLI's first safe write left of it when that one was not confirmed)."""
    try:
        async with asyncio.timeout(within_s):
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
    import tempfile

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
    import ssl

    from gateway.northbound.mqtt_out import broker_tls

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


# ---- the first safe write, before the daemon is loaded -----------------------------------------
# Importing the daemon (pydantic, numpy, aiohttp, cryptography, ...) and validating the config takes
# most of a second on a small machine. The relay modules and their coils are in plain sight in the
# TOML: SafeFirst writes every output safe and reads it back with the daemon's own OutputBank before
# any of that, then keeps each module's watchdog fed until the daemon's start confirms the outputs
# again and its engine takes the heartbeats over. It only ever writes safe values, and only when the
# raw file says plainly that every safe value is "off": anything else (a type pydantic would have to
# coerce, a missing table, a safe value of "on") leaves the whole start to the daemon, as before.

SAFE_FIRST_BEAT_CHECK_S = 0.05
"""How often the thread looks whether a module's heartbeat is due (the bank's schedule: timeout / 4)."""

SAFE_FIRST_MIN_LEFT_S = 1.0
"""What the daemon's confirmation keeps of START_OUTPUTS_S when the first safe write was not confirmed
(the module may answer by then; the outputs' share of the start stays within START_OUTPUTS_S)."""

RAW_DEFAULTS: dict[str, dict[str, object]] = {
    "outputs": {"safe": False, "feedback_input": None},
    "devices": {"host": "127.0.0.1", "port": None, "serial_port": None, "baudrate": 19200, "parity": "E",
                "stopbits": 1, "unit_id": 1, "timeout_s": 0.5, "retries": 1},
    "watchdog": {"timeout_ms": 1000, "timeout_register": None, "clear_register": None, "reassert_max": 3},
}
"""The config models' defaults (Output, Device, Watchdog) of what the first safe write reads; pydantic
is not imported yet. tests/ops/test_start_fast.py holds them equal to gateway/config/models.py."""


class PlanSkipped(Exception):
    """The raw configuration is not plainly usable for the first safe write (the reason)."""


def _field(table: dict[str, Any], key: str, kind: type, at: str, section: str,
           bounds: tuple[float, float] | None = None) -> Any:  # fmt: skip
    """`table[key]` of exactly `kind` (an int stands for a float, as in the models) within `bounds`."""
    defaults = RAW_DEFAULTS.get(section, {})
    if key not in table and key not in defaults:
        raise PlanSkipped(f"{at}.{key} is missing")
    v = table.get(key, defaults.get(key))
    if v is None and key not in table:
        return None
    if kind is float and type(v) is int:
        v = float(v)
    if type(v) is not kind:
        raise PlanSkipped(f"{at}.{key} is not a plain {kind.__name__}")
    if bounds is not None and not bounds[0] <= v <= bounds[1]:
        raise PlanSkipped(f"{at}.{key} = {v} is out of range")
    return v


def outputs_plan(raw: dict[str, Any]) -> tuple[OutputsPlan, dict[str, DeviceSpec]]:
    """The relay modules, their coils and watchdogs from a parsed (not validated) TOML document;
    PlanSkipped when anything is not plain (the full validation then decides, before any write)."""
    from drivers.modbus.spec import DeviceSpec
    from gateway.core.outputs import ModulePlan, OutputPlan, OutputsPlan, WatchdogPlan

    outs, devs = raw.get("outputs", []), raw.get("devices", [])
    if not isinstance(outs, list) or not isinstance(devs, list):
        raise PlanSkipped("outputs or devices is not an array of tables")
    by_id: dict[str, dict[str, Any]] = {}
    for i, d in enumerate(devs):
        if not isinstance(d, dict) or type(d.get("id")) is not str or d["id"] in by_id:
            raise PlanSkipped(f"devices[{i}] has no id of its own")
        by_id[d["id"]] = d
    outputs: list[OutputPlan] = []
    for i, o in enumerate(outs):
        if not isinstance(o, dict):
            raise PlanSkipped(f"outputs[{i}] is not a table")
        at = f"outputs[{i}]"
        out = OutputPlan(
            id=_field(o, "id", str, at, "outputs"),
            device=_field(o, "device", str, at, "outputs"),
            coil=_field(o, "coil", int, at, "outputs", (0, 65535)),
            safe=_field(o, "safe", bool, at, "outputs"),
            feedback_input=_field(o, "feedback_input", int, at, "outputs", (0, 65535)),
        )
        if out.safe:
            raise PlanSkipped(f"outputs.{out.id}.safe is true: nothing is energized before the full validation")
        if any(x.id == out.id or (x.device, x.coil) == (out.device, out.coil) for x in outputs):
            raise PlanSkipped(f"outputs.{out.id}: its id or its coil is also another output's")
        outputs.append(out)
    modules: dict[str, ModulePlan] = {}
    specs: dict[str, DeviceSpec] = {}
    for did in sorted({o.device for o in outputs}):
        d, at = by_id.get(did), f"devices.{did}"
        if d is None:
            raise PlanSkipped(f"{at} is not configured")
        transport = _field(d, "transport", str, at, "devices")
        wd = d.get("watchdog")
        if transport not in ("modbus_tcp", "modbus_rtu") or not isinstance(wd, dict):
            raise PlanSkipped(f"{at} is not a Modbus module with a watchdog table")
        w = f"{at}.watchdog"
        watchdog = WatchdogPlan(
            heartbeat_register=_field(wd, "heartbeat_register", int, w, "watchdog", (0, 65535)),
            timeout_ms=_field(wd, "timeout_ms", int, w, "watchdog", (100, 60000)),
            timeout_register=_field(wd, "timeout_register", int, w, "watchdog", (0, 65535)),
            clear_register=_field(wd, "clear_register", int, w, "watchdog", (0, 65535)),
            reassert_max=_field(wd, "reassert_max", int, w, "watchdog", (1, 20)),
        )
        host, port = _field(d, "host", str, at, "devices"), _field(d, "port", int, at, "devices", (1, 65535))
        serial_port = _field(d, "serial_port", str, at, "devices")
        modules[did] = ModulePlan(did, transport, host, port, serial_port, watchdog)
        parity = _field(d, "parity", str, at, "devices")
        if parity not in ("N", "E", "O"):
            raise PlanSkipped(f"{at}.parity is not N, E or O")
        # As gateway/config/specs.py's modbus_spec builds it (the writer needs no points).
        specs[did] = DeviceSpec(
            id=did,
            transport="tcp" if transport == "modbus_tcp" else "rtu",
            host=host,
            port=port or 502,
            serial_port=serial_port or "",
            baudrate=_field(d, "baudrate", int, at, "devices", (1200, 921600)),
            parity=parity,
            stopbits=_field(d, "stopbits", int, at, "devices", (1, 2)),
            unit_id=_field(d, "unit_id", int, at, "devices", (0, 247)),
            timeout_s=_field(d, "timeout_s", float, at, "devices", (1e-9, 30)),
            retries=_field(d, "retries", int, at, "devices", (0, 5)),
        )
    return OutputsPlan(tuple(outputs), modules), specs


class SafeFirst:
    """The CLI's first safe write: every output written safe and read back (OutputBank.write_safe_all,
    the daemon's own code) within START_OUTPUTS_S - SAFE_FIRST_MIN_LEFT_S, in a thread with its own
    event loop, while the main thread imports the daemon and validates the config. Once confirmed,
    the thread keeps each module's watchdog fed on the bank's schedule until `hand_over()`: a last
    heartbeat, the connections closed, and the daemon's start confirms the outputs again at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw: dict[str, Any] | None = None
        """The parsed TOML document the outputs were written safe from: the full validation takes the
        same (None: the file did not read or parse; the full load says why)."""
        self.confirmed: bool | None = None
        """True: every output read back safe; False: not (the daemon tries again); None: not tried."""
        self.took_s = 0.0
        self._written = threading.Event()
        self._stop = threading.Event()
        self._wake: Callable[[], object] | None = None
        """Wakes the thread's loop from the main thread (set while it feeds the watchdogs)."""
        self._thread: threading.Thread | None = None

    def start(self) -> SafeFirst:
        """Write every output safe and read it back; return when that is done (confirmed or not)."""
        import tomllib

        try:
            self.raw = tomllib.loads(self.path.read_text(encoding="utf-8"))
            plan, specs = outputs_plan(self.raw)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, PlanSkipped, ValueError) as exc:
            # The full load reports an unreadable or invalid file; the daemon's start writes the outputs.
            log.info("outputs_safe_first_skipped", reason=str(exc) or type(exc).__name__)
            return self
        if not plan.outputs:
            return self
        self._thread = threading.Thread(target=self._main, args=(plan, specs), name="safe-first", daemon=True)
        self._thread.start()
        self._written.wait(START_OUTPUTS_S)  # the thread's own timeout ends the write first
        return self

    def outputs_within_s(self) -> float:
        """How long the daemon's confirmation of the outputs may take."""
        if self.confirmed is False:
            return max(START_OUTPUTS_S - self.took_s, SAFE_FIRST_MIN_LEFT_S)
        return START_OUTPUTS_S

    def hand_over(self) -> None:
        """Stop feeding the watchdogs after one last heartbeat, and close the connections (idempotent)."""
        self._stop.set()
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop has just ended by itself
                wake()
        if self._thread is not None:
            self._thread.join(START_OUTPUTS_S)
            if self._thread.is_alive():
                log.error("outputs_safe_first_not_stopped", waited_s=START_OUTPUTS_S)
            self._thread = None

    def _main(self, plan: OutputsPlan, specs: dict[str, DeviceSpec]) -> None:
        try:
            asyncio.run(self._run(plan, specs))
        except Exception as exc:  # a defect here must not stop the daemon's own start from writing them
            log.error("outputs_safe_first_failed", error=repr(exc), exc_info=exc)
        finally:
            self._written.set()

    async def _run(self, plan: OutputsPlan, specs: dict[str, DeviceSpec]) -> None:
        import time

        from drivers.modbus import BusRegistry
        from gateway.core.outputs import OutputBank

        buses = BusRegistry()
        try:
            bank = OutputBank(plan, specs, buses, lambda ev: None, time.monotonic)
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(START_OUTPUTS_S - SAFE_FIRST_MIN_LEFT_S):
                    self.confirmed = await bank.write_safe_all()
            except TimeoutError:
                self.confirmed = False
            self.took_s = time.monotonic() - t0
            log.info("outputs_safe_first", confirmed=self.confirmed, outputs=len(plan.outputs),
                     modules=sorted(plan.modules), took_ms=round(self.took_s * 1000, 1))  # fmt: skip
            if not self.confirmed:
                return  # the daemon's start tries again, and says what is wrong
            wake = asyncio.Event()
            self._wake = functools.partial(asyncio.get_running_loop().call_soon_threadsafe, wake.set)
            self._written.set()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SAFE_FIRST_BEAT_CHECK_S):
                        await wake.wait()
                await bank.heartbeat_due()
            await bank.heartbeat_due(force=True)  # the daemon's confirmation beats again within ms
            log.info("outputs_handed_over", modules=sorted(plan.modules))
        finally:
            self._wake = None
            buses.close()


__all__ = [
    "RAW_DEFAULTS",
    "SAFE_FIRST_MIN_LEFT_S",
    "START_OUTPUTS_S",
    "PlanSkipped",
    "SafeFirst",
    "StartFailure",
    "bind_status",
    "check_broker_tls",
    "check_state_dir",
    "confirm_outputs",
    "outputs_plan",
]

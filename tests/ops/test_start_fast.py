"""Start fast, safe first (issue 16.7): `edge-gateway run` writes every output safe and reads it
back before the daemon and its heavy imports (pydantic, numpy, aiohttp, ...) are loaded, keeps the
relay module's watchdog fed until the daemon takes over, and fails as it did when something is
wrong. Behaviour only: the time it takes is the bench's (`python -m bench`, start_to_safe_ms)."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.app.startup import RAW_DEFAULTS, START_OUTPUTS_S, PlanSkipped, outputs_plan
from gateway.config import Device, Output, Watchdog
from gateway.config.loader import load, parse
from gateway.config.specs import modbus_specs
from tests.support.plant import DEMO, ROOT, Plant, plant
from tests.support.procs import Mosquitto, wait_for

HEAVY = ("numpy", "influxdb_client", "pydantic", "pydantic_core", "aiohttp", "cryptography", "google", "aiomqtt",
         "paho", "gateway.app.daemon", "gateway.config.models")  # fmt: skip
"""Modules that must not have started loading before the outputs are confirmed safe."""

SLOW_LOAD = """
import runpy, sys, time

class SlowDaemon:
    '''Loading the daemon takes {0} s of CPU (the GIL held, as a real import holds it).'''
    done = False

    def find_spec(self, name, path=None, target=None):
        if name == "gateway.app.daemon" and not SlowDaemon.done:
            SlowDaemon.done = True
            end = time.monotonic() + {0}
            while time.monotonic() < end:
                pass
        return None

sys.meta_path.insert(0, SlowDaemon())
runpy.run_module("gateway.app.cli", run_name="__main__", alter_sys=True)
"""


class Gateway:
    """`python -X importtime -m gateway.app.cli run`: log lines and import times in one stream, in
    the order the process wrote them (structlog flushes every line; importtime writes unbuffered)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, cfg: Path, busy_load_s: float = 0.0) -> Gateway:
        how = ["-c", SLOW_LOAD.format(busy_load_s)] if busy_load_s else ["-m", "gateway.app.cli"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-X", "importtime", *how, "--log-level", "info", "run", "--config", str(cfg),
            cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": ""}, limit=1 << 24,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    async def ready(self) -> None:
        try:
            await wait_for(lambda: self.has("gateway_ready"), 30, what="gateway_ready")
        except TimeoutError:
            log = [ln for ln in self.lines if not ln.startswith("import time:")]
            reader = self._reader.exception() if self._reader.done() else None
            raise AssertionError(
                f"no gateway_ready (exit code {self.proc.returncode}, reader {reader!r}): {log[-15:]}"
            ) from None

    def index(self, event: str) -> int:
        return next(i for i, ln in enumerate(self.lines) if f'"event": "{event}"' in ln)

    def has(self, event: str) -> bool:
        return any(f'"event": "{event}"' in ln for ln in self.lines)

    def imported(self) -> list[tuple[int, str]]:
        """(line index, module) of every import the process made, in order."""
        out = []
        for i, ln in enumerate(self.lines):
            if ln.startswith("import time:") and "|" in ln:
                name = ln.split("|")[2].strip()
                if name != "imported package":
                    out.append((i, name))
        return out

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        await asyncio.wait_for(self._reader, 5)
        return code


def heavy(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HEAVY)


def energize(p: Plant) -> None:
    """A module left energized by a gateway that died (the bench does the same)."""
    for i in range(p.relay.n):
        p.relay._set_coil(i, True, "test")


def safe_writes(p: Plant, since: float) -> dict[int, float]:
    """Coil -> when the gateway wrote it off (de-energized) after `since`."""
    return {c.coil: c.at for c in p.relay.changes if c.cause == "write" and not c.value and c.at >= since}


@pytest.mark.slow
async def test_outputs_safe_before_heavy_imports_and_no_watchdog_trip(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        coils = {o["coil"] for o in p.raw["outputs"]}
        energize(p)
        t0 = time.monotonic()
        gw = await Gateway.start(cfg)
        try:
            await gw.ready()
            # Every output written off by this start, read back safe, and said so, before any heavy
            # module began to load; the daemon then confirmed them again as its start's first step.
            assert set(safe_writes(p, t0)) == coils
            safe = gw.index("outputs_safe")
            first = gw.lines[gw.index("outputs_safe_first")]
            assert '"confirmed": true' in first, first
            loaded = gw.imported()
            assert [n for i, n in loaded if i < safe and heavy(n)] == []
            assert {"pydantic", "numpy", "gateway.app.daemon"} <= {n for i, n in loaded if i > safe}
            assert gw.index("outputs_handed_over") < gw.index("gateway_starting")
            assert [ln for ln in gw.lines[gw.index("gateway_starting"):] if '"event": "outputs_safe"' in ln]
            # The module's watchdog, armed by the first safe write's heartbeat, never ran out.
            await asyncio.sleep(1.5)
            assert not p.relay.watchdog_tripped
            assert [c for c in p.relay.changes if c.cause == "watchdog"] == []
        finally:
            code = await gw.stop()
        assert code == 0, gw.lines[-20:]


@pytest.mark.slow
async def test_watchdog_fed_while_the_daemon_loads_longer_than_its_timeout(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Loading the daemon takes 1.6 s (the module's watchdog: 1000 ms, refreshed every 250 ms):
    the heartbeats go on from the first safe write until the daemon's bank takes over."""
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        assert next(d for d in p.raw["devices"] if d["id"] == "relay-1")["watchdog"]["timeout_ms"] == 1000
        energize(p)
        t0 = time.monotonic()
        gw = await Gateway.start(cfg, busy_load_s=1.6)
        try:
            await gw.ready()
            writes = safe_writes(p, t0)
            assert set(writes) == {o["coil"] for o in p.raw["outputs"]}
            await asyncio.sleep(1.5)
            assert not p.relay.watchdog_tripped, "the module's watchdog ran out while the daemon loaded"
            assert [c for c in p.relay.changes if c.cause == "watchdog"] == []
            # The permissive came on only after the daemon's start (gas good): nothing energized early.
            on = [c.at for c in p.relay.changes if c.coil == 0 and c.value and c.cause == "write" and c.at >= t0]
            assert on and min(on) > max(writes.values()) + 1.0
        finally:
            code = await gw.stop()
        assert code == 0, gw.lines[-20:]


async def run_to_exit(cfg: Path) -> tuple[int, list[str], float]:
    """`edge-gateway run` that is to fail: its exit code, its stderr lines, how long it took."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.app.cli", "--log-level", "warning", "run", "--config", str(cfg),
        cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": ""},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode().strip().splitlines(), time.monotonic() - t0


@pytest.mark.slow
async def test_relay_module_away_exits_1_in_one_line_as_before(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        await p.relay.stop()
        code, err, took = await run_to_exit(cfg)
        assert code == 1, err
        assert err[-1].startswith("edge-gateway: cannot start: outputs not confirmed safe"), err
        assert f"relay-1 at 127.0.0.1:{p.relay.port}" in err[-1] and "Fix: " in err[-1]
        assert "Traceback" not in "\n".join(err)
        assert took < START_OUTPUTS_S + 1.0, f"start failure took {took:.1f} s"


@pytest.mark.slow
async def test_invalid_config_exits_2_outputs_written_safe_nothing_energized(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        p.raw["signals"][0]["zone"] = "nowhere"  # valid TOML, plain outputs, refused by the full validation
        cfg = p.write(tmp_path / "gw.toml")
        energize(p)
        t0 = time.monotonic()
        code, err, _ = await run_to_exit(cfg)
        assert code == 2, err
        assert any("nowhere" in ln for ln in err), err
        coils = {o["coil"] for o in p.raw["outputs"]}
        assert set(safe_writes(p, t0)) == coils
        assert not any(p.relay.coils[c] for c in coils)
        assert not [c for c in p.relay.changes if c.value and c.at >= t0]


# ---- the plan read from the raw TOML ------------------------------------------------------------


def test_raw_defaults_are_the_models_defaults() -> None:
    for section, model in (("outputs", Output), ("devices", Device), ("watchdog", Watchdog)):
        for name, value in RAW_DEFAULTS[section].items():
            assert model.model_fields[name].default == value, f"{section}.{name}"


def _connection(spec: Any) -> tuple[Any, ...]:
    return (spec.id, spec.transport, spec.host, spec.port, spec.serial_port, spec.baudrate, spec.parity,
            spec.stopbits, spec.unit_id, spec.timeout_s, spec.retries, spec.bus_key, spec.frame_gap_s)  # fmt: skip


def _same_as_validated(raw: dict[str, Any]) -> None:
    cfg = parse(copy.deepcopy(raw), "test", DEMO.parent)
    plan, specs = outputs_plan(raw)
    assert [(o.id, o.device, o.coil, o.safe, o.feedback_input) for o in plan.outputs] == [
        (o.id, o.device, o.coil, o.safe, o.feedback_input) for o in cfg.outputs
    ]
    full = modbus_specs(cfg)
    assert set(specs) == {o.device for o in cfg.outputs}
    for did, spec in specs.items():
        assert _connection(spec) == _connection(full[did])
        w, v = plan.device(did).watchdog, cfg.device(did).watchdog
        assert v is not None
        assert (w.heartbeat_register, w.timeout_ms, w.timeout_register, w.clear_register, w.reassert_max) == (
            v.heartbeat_register, v.timeout_ms, v.timeout_register, v.clear_register, v.reassert_max)  # fmt: skip


def test_plan_is_what_the_validated_config_gives() -> None:
    raw = tomllib.loads(DEMO.read_text())
    assert load(DEMO)  # the demo config is valid
    _same_as_validated(raw)
    # Every optional setting left to its default, and a serial module with a feedback contact.
    relay = next(d for d in raw["devices"] if d["id"] == "relay-1")
    for k in ("host", "unit_id", "timeout_s", "poll_s"):
        relay.pop(k)
    relay["watchdog"] = {"heartbeat_register": 7}
    raw["outputs"][0]["feedback_input"] = 4
    _same_as_validated(raw)
    for k in ("host", "port"):
        relay.pop(k, None)
    relay.update(transport="modbus_rtu", serial_port="/dev/ttyUSB0", baudrate=9600, parity="N", stopbits=2)
    _same_as_validated(raw)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("output", {"safe": True, "active_energized": False}),  # energizing waits for the validation
        ("output", {"coil": 1.0}),  # pydantic would coerce it: not plain
        ("output", {"coil": 70000}),
        ("output", {"device": "nowhere"}),
        ("relay", {"port": "15022"}),
        ("relay", {"watchdog": None}),
        ("relay", {"transport": "mqtt"}),
    ],
)
def test_anything_not_plain_leaves_the_outputs_to_the_daemon(where: str, change: dict[str, Any]) -> None:
    raw = tomllib.loads(DEMO.read_text())
    target = raw["outputs"][0] if where == "output" else next(d for d in raw["devices"] if d["id"] == "relay-1")
    for k, v in change.items():
        if v is None:
            target.pop(k)
        else:
            target[k] = v
    with pytest.raises(PlanSkipped):
        outputs_plan(raw)

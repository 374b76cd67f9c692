"""Fail-safe outputs: relay coils on Modbus output modules.

- At start, before anything else, every coil is written to its safe value and the
  module's watchdog is re-armed; at shutdown and on any error, safe again.
- Every write is read back (coil, or the feedback input of a force-guided contact); the
  observation goes to the engine as `OutputFeedback`, and a mismatch is an output fault.
- Writes toward the safe value go first when several change in one engine step.
- The host-watchdog heartbeat is written only when the *engine loop* kicks: a stuck
  engine stops the heartbeats and the module drops its outputs by itself.
- Coils are re-read every `verify_s`, so a module that dropped its outputs on its own
  (watchdog, power cycle) or a welded contact is seen.
- A coil found away from its safe value while the gateway wants it safe (someone else wrote
  it, a relay that will not drop) is written safe again, at most `reassert_max` times until
  the output fault is acknowledged. A module that will not obey is *starved*: no more
  heartbeats, so its own watchdog drops every output. Acknowledging the output fault re-arms
  the modules (heartbeat, clear register) before any new write.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from drivers.modbus import BusRegistry, RelayModuleClient
from rules.events import Event, OutputFeedback

if TYPE_CHECKING:  # the CLI's first safe write runs this bank before pydantic is imported
    from drivers.modbus.spec import DeviceSpec
    from gateway.config import GatewayConfig, Watchdog

log = structlog.get_logger("outputs")


@dataclass(frozen=True, slots=True)
class WatchdogPlan:
    """A relay module's host watchdog, as the bank reads it (the fields of config's Watchdog)."""

    heartbeat_register: int
    timeout_ms: int
    timeout_register: int | None
    clear_register: int | None
    reassert_max: int


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """One output, as the bank reads it (the fields of config's Output it uses)."""

    id: str
    device: str
    coil: int
    safe: bool
    feedback_input: int | None


@dataclass(frozen=True, slots=True)
class ModulePlan:
    """A relay module: its watchdog, and where it is (for a start failure's message)."""

    id: str
    transport: str
    host: str
    port: int | None
    serial_port: str | None
    watchdog: WatchdogPlan


@dataclass(frozen=True, slots=True)
class OutputsPlan:
    """What the bank needs of a GatewayConfig (`outputs`, `device()`), without the validated config:
    the CLI reads it from the raw TOML to write every output safe before the daemon is loaded
    (gateway/app/startup.py, SafeFirst)."""

    outputs: tuple[OutputPlan, ...]
    modules: dict[str, ModulePlan]

    def device(self, did: str) -> ModulePlan:
        return self.modules[did]


@dataclass(slots=True)
class _Out:
    id: str
    module: str
    coil: int
    safe: bool


class OutputBank:
    def __init__(
        self,
        cfg: GatewayConfig | OutputsPlan,
        specs: dict[str, DeviceSpec],
        buses: BusRegistry,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        verify_s: float = 1.0,
        on_alert: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        """`on_alert(kind, fields)` hears what must be said on every channel (log, audit, MQTT,
        page): "output_reasserted" and "output_module_starved"."""
        self._emit = emit
        self._alert = on_alert or (lambda kind, fields: None)
        self._clock = clock
        self.verify_s = verify_s
        self.outputs = {o.id: _Out(o.id, o.device, o.coil, o.safe) for o in cfg.outputs}
        self.modules: dict[str, RelayModuleClient] = {}
        self._beat_every: dict[str, float] = {}
        self._watchdogs: dict[str, Watchdog | WatchdogPlan] = {}
        for did in {o.device for o in cfg.outputs}:
            dev = cfg.device(did)
            wd = dev.watchdog
            if wd is None:  # the loader refuses this already; never run outputs without a watchdog
                raise ValueError(f"devices.{did}: an output module needs a watchdog table")
            self._watchdogs[did] = wd
            fb = {o.coil: o.feedback_input for o in cfg.outputs if o.device == did and o.feedback_input is not None}
            self.modules[did] = RelayModuleClient(
                specs[did], buses, feedback=fb, watchdog_address=wd.heartbeat_register, clear_address=wd.clear_register
            )
            # DOMAIN.md: refresh at <= timeout/3; a quarter leaves room for one late tick.
            self._beat_every[did] = wd.timeout_ms / 1000 / 4
        self.commanded: dict[str, bool] = {o.id: o.safe for o in self.outputs.values()}
        self.observed: dict[str, bool | None] = dict.fromkeys(self.outputs)
        self._pending: dict[str, bool] = {}
        self._beat_due: set[str] = set()
        self._last_beat: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.writes = 0
        self.reasserts: Counter[str] = Counter()
        """Safe-value re-writes per output since the last re-arm (output-fault acknowledgement)."""
        self.starved: dict[str, str] = {}
        """Module -> why its watchdog is no longer fed (it drops every output by itself)."""
        self._rearm_due = False
        self.on_write: Callable[[float], None] | None = None
        """Called with each write's duration (write + read-back), for /metrics."""

    async def write_safe_all(self) -> bool:
        """Every coil to its safe value, read back, then re-arm the modules. True if all confirmed."""
        ok = True
        for o in self.outputs.values():
            fb = await self.modules[o.module].set_output(o.id, o.coil, o.safe)
            self.commanded[o.id] = o.safe
            self.observed[o.id] = fb.observed
            self._emit(fb)  # an unconfirmed safe state is an output fault from the first engine step
            ok = ok and fb.observed == o.safe
        for did, m in self.modules.items():
            beat = await m.heartbeat()
            wd = self._watchdogs[did]
            if wd.timeout_register is not None:
                ok = await m.write_register(wd.timeout_register, wd.timeout_ms) == wd.timeout_ms and ok
            cleared = await m.clear_watchdog() if wd.clear_register is not None else True
            self._last_beat[did] = self._clock()
            ok = ok and beat and cleared
        if ok:
            log.info("outputs_safe", outputs=len(self.outputs))
        else:
            log.error("outputs_safe_unconfirmed", observed=self.observed)
        return ok

    async def heartbeat_due(self, force: bool = False) -> None:
        """Heartbeat every module whose beat is due on `kick()`'s schedule (every one with `force`),
        without `run()`: how the CLI keeps the watchdogs fed from its first safe write until the
        daemon's own bank takes over."""
        now = self._clock()
        for did, m in self.modules.items():
            if did not in self.starved and (force or now - self._last_beat.get(did, -1e9) >= self._beat_every[did]):
                self._last_beat[did] = now
                await m.heartbeat()

    def command(self, output: str, value: bool) -> None:
        self._pending[output] = value
        self._wake.set()

    def kick(self) -> None:
        """Called from the engine loop on every tick: heartbeats follow the engine's liveness."""
        now = self._clock()
        for did, every in self._beat_every.items():
            if did in self.starved:
                continue  # a module that will not obey gets no heartbeat: its watchdog drops it
            if now - self._last_beat.get(did, -1e9) >= every:
                self._beat_due.add(did)
                self._last_beat[did] = now
        if self._beat_due:
            self._wake.set()

    async def run(self) -> None:
        next_verify = self._clock() + self.verify_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_verify - self._clock())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._rearm_due:
                await self._rearm()
            if self._pending:
                await self._write_pending()
            for did in list(self._beat_due):
                self._beat_due.discard(did)
                if did not in self.starved:
                    await self.modules[did].heartbeat()
            if self._clock() >= next_verify:
                await self._verify()
                next_verify = self._clock() + self.verify_s

    async def _write_pending(self) -> None:
        batch, self._pending = self._pending, {}
        # Toward safe first: a drop must never wait behind a release.
        for oid, value in sorted(batch.items(), key=lambda kv: kv[1] != self.outputs[kv[0]].safe):
            o = self.outputs[oid]
            t0 = self._clock()
            fb = await self.modules[o.module].set_output(oid, o.coil, value)
            if self.on_write is not None:
                self.on_write(self._clock() - t0)
            self.writes += 1
            self.commanded[oid] = value
            self.observed[oid] = fb.observed
            self._emit(fb)
            if fb.observed != value:
                log.error("output_readback_mismatch", output=oid, commanded=value, observed=fb.observed)
                if value == o.safe and fb.observed is not None:
                    await self._reassert(o, fb.observed)

    async def _verify(self) -> None:
        for oid, o in self.outputs.items():
            fb = await self.modules[o.module].check_output(oid, o.coil, self.commanded[oid])
            changed = fb.observed != self.observed[oid]
            self.observed[oid] = fb.observed
            if fb.observed != self.commanded[oid]:
                if changed:
                    log.error("output_verify_mismatch", output=oid, commanded=self.commanded[oid],
                              observed=fb.observed)  # fmt: skip
                    self._emit(OutputFeedback(oid, self.commanded[oid], fb.observed, "periodic read-back"))
                if self.commanded[oid] == o.safe and fb.observed is not None:
                    # Someone else energized it, or it will not drop: the gateway's "safe" must hold.
                    await self._reassert(o, fb.observed)

    async def _reassert(self, o: _Out, observed: bool) -> None:
        """Write the safe value again (bounded); starve the module's watchdog if it will not obey."""
        if o.module in self.starved:
            return
        limit = self._watchdogs[o.module].reassert_max
        self.reasserts[o.id] += 1
        n = self.reasserts[o.id]
        if n > limit:
            self._starve(o.module, f"{o.id}: found {observed} again after {limit} re-writes of {o.safe}")
            return
        fb = await self.modules[o.module].set_output(o.id, o.coil, o.safe)
        self.writes += 1
        self.observed[o.id] = fb.observed
        obeyed = fb.observed == o.safe
        log.critical("output_reasserted_safe", output=o.id, module=o.module, found=observed, attempt=n, limit=limit,
                     obeyed=obeyed)  # fmt: skip
        self._alert("output_reasserted", {"output": o.id, "module": o.module, "found": observed, "safe": o.safe,
                                          "attempt": n, "limit": limit, "obeyed": obeyed})  # fmt: skip
        if not obeyed:
            self._starve(o.module, f"{o.id}: wrote {o.safe}, read back {fb.observed}")

    def _starve(self, module: str, why: str) -> None:
        """Stop feeding the module's watchdog: within its timeout it drops every output by itself."""
        self.starved[module] = why
        self._beat_due.discard(module)
        timeout_ms = self._watchdogs[module].timeout_ms
        log.critical("output_module_starved", module=module, reason=why, watchdog_timeout_ms=timeout_ms,
                     fix="find who writes the module's coils or replace the relay; then acknowledge the output fault")
        self._alert("output_module_starved", {"module": module, "reason": why, "watchdog_timeout_ms": timeout_ms})

    def rearm(self) -> None:
        """The output fault was acknowledged: re-arm every module (heartbeat, clear) before any new write."""
        self._rearm_due = True
        self._wake.set()

    async def _rearm(self) -> None:
        self._rearm_due = False
        was = dict(self.starved)
        self.starved.clear()
        self.reasserts.clear()
        for did, m in self.modules.items():
            beat = await m.heartbeat()
            cleared = await m.clear_watchdog() if self._watchdogs[did].clear_register is not None else True
            self._last_beat[did] = self._clock()
            log.info("output_module_rearmed", module=did, was_starved=was.get(did), heartbeat=beat, cleared=cleared)

    async def shutdown(self) -> None:
        """Best effort, bounded: every coil safe."""
        try:
            async with asyncio.timeout(3):
                await self.write_safe_all()
        except TimeoutError:
            log.error("outputs_safe_on_shutdown_timed_out")

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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from drivers.modbus import BusRegistry, RelayModuleClient
from drivers.modbus.spec import DeviceSpec
from gateway.config import GatewayConfig, Watchdog
from rules.events import Event, OutputFeedback

log = structlog.get_logger("outputs")


@dataclass(slots=True)
class _Out:
    id: str
    module: str
    coil: int
    safe: bool


class OutputBank:
    def __init__(
        self,
        cfg: GatewayConfig,
        specs: dict[str, DeviceSpec],
        buses: BusRegistry,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        verify_s: float = 1.0,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self.verify_s = verify_s
        self.outputs = {o.id: _Out(o.id, o.device, o.coil, o.safe) for o in cfg.outputs}
        self.modules: dict[str, RelayModuleClient] = {}
        self._beat_every: dict[str, float] = {}
        self._watchdogs: dict[str, Watchdog] = {}
        for did in {o.device for o in cfg.outputs}:
            dev = cfg.device(did)
            wd = dev.watchdog
            assert wd is not None  # the loader refuses output modules without a watchdog
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
        self.on_write: Callable[[float], None] | None = None
        """Called with each write's duration (write + read-back), for /metrics."""

    async def write_safe_all(self) -> bool:
        """Every coil to its safe value, read back, then re-arm the modules. True if all confirmed."""
        ok = True
        for o in self.outputs.values():
            fb = await self.modules[o.module].set_output(o.id, o.coil, o.safe)
            self.commanded[o.id] = o.safe
            self.observed[o.id] = fb.observed
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

    def command(self, output: str, value: bool) -> None:
        self._pending[output] = value
        self._wake.set()

    def kick(self) -> None:
        """Called from the engine loop on every tick: heartbeats follow the engine's liveness."""
        now = self._clock()
        for did, every in self._beat_every.items():
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
            if self._pending:
                await self._write_pending()
            for did in list(self._beat_due):
                self._beat_due.discard(did)
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

    async def _verify(self) -> None:
        for oid, o in self.outputs.items():
            fb = await self.modules[o.module].check_output(oid, o.coil, self.commanded[oid])
            changed = fb.observed != self.observed[oid]
            self.observed[oid] = fb.observed
            if fb.observed != self.commanded[oid] and changed:
                log.error("output_verify_mismatch", output=oid, commanded=self.commanded[oid], observed=fb.observed)
                self._emit(OutputFeedback(oid, self.commanded[oid], fb.observed, "periodic read-back"))

    async def shutdown(self) -> None:
        """Best effort, bounded: every coil safe."""
        try:
            async with asyncio.timeout(3):
                await self.write_safe_all()
        except TimeoutError:
            log.error("outputs_safe_on_shutdown_timed_out")

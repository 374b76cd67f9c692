"""Drive an output module: write, then read back what the module really did.

A Modbus FC05 reply is only an echo of the request; it proves nothing about the coil,
let alone the contact. Every write here is followed by a read-back (FC01, or better FC02
of a discrete input wired to a force-guided contact) and returns what was *observed*, so
the caller can emit `OutputFeedback(output, commanded, observed)`; a mismatch or None
is an output fault for the engine.

Wiring: the daemon builds one `RelayModuleClient(spec, buses)` per module on the same
`BusRegistry` as the sources, calls `set_output()` for every output action, and runs a
task that calls `heartbeat()` at <= watchdog timeout / 3.
"""

from __future__ import annotations

import structlog

from rules.events import OutputFeedback

from .bus import BusRegistry
from .codec import Table
from .errors import ConfigError, TransportError
from .spec import DeviceSpec

log = structlog.get_logger("drivers.modbus.writer")


class RelayModuleClient:
    """Write coils / registers of one output module and read them back."""

    def __init__(
        self,
        spec: DeviceSpec,
        buses: BusRegistry,
        *,
        feedback: dict[int, int] | None = None,
        watchdog_address: int | None = None,
        clear_address: int | None = None,
    ) -> None:
        """`feedback` maps a coil address to the discrete input that reports its contact;
        `watchdog_address` is the module's host-heartbeat holding register and
        `clear_address` the register that re-arms outputs after a watchdog trip."""
        self.spec = spec
        self._bus = buses.bus(spec)
        self._feedback = dict(feedback or {})
        for coil, di in self._feedback.items():
            if not (0 <= coil <= 65535 and 0 <= di <= 65535):
                raise ConfigError(f"outputs.{spec.id}.feedback", f"coil {coil} -> input {di} outside 0..65535")
        self._watchdog = watchdog_address
        self._clear = clear_address
        self._beat = 0
        self.comm_errors = 0
        """Failed transactions (writes, read-backs, heartbeats), for the status page."""
        self.ok: bool | None = None
        """Whether the last transaction succeeded (None before the first)."""
        self._log = log.bind(module=spec.id, bus=self._bus.key)

    def _failed(self, what: str, exc: TransportError) -> None:
        self.comm_errors += 1
        if self.ok is not False:
            self._log.warning("output_module_down", op=what, reason=exc.reason_text, detail=exc.detail)
        self.ok = False

    def _succeeded(self) -> None:
        if self.ok is False:
            self._log.info("output_module_recovered")
        self.ok = True

    async def read_coil(self, address: int) -> bool | None:
        """Observed state of a coil: its feedback input when configured (FC02), else the coil (FC01)."""
        di = self._feedback.get(address)
        table, where = (Table.DISCRETE, di) if di is not None else (Table.COIL, address)
        try:
            bits = await self._bus.read(table, where, 1, self.spec.unit_id, self.spec.timeout_s, self.spec.retries)
        except TransportError as exc:
            self._failed("read_coil", exc)
            return None
        self._succeeded()
        return bool(bits[0])

    async def write_coil(self, address: int, value: bool) -> bool | None:
        """FC05 then read back; returns the observed state, None when either step failed."""
        try:
            await self._bus.write_coil(address, value, self.spec.unit_id, self.spec.timeout_s, self.spec.retries)
        except TransportError as exc:
            self._failed("write_coil", exc)
            return None
        return await self.read_coil(address)

    async def set_output(self, output: str, address: int, value: bool) -> OutputFeedback:
        """Write one output and build the feedback event the engine needs (mismatch = output fault)."""
        observed = await self.write_coil(address, value)
        reason = "" if observed == value else ("read_back_failed" if observed is None else "read_back_mismatch")
        return OutputFeedback(output, commanded=value, observed=observed, reason=reason)

    async def check_output(self, output: str, address: int, commanded: bool) -> OutputFeedback:
        """Periodic re-check of an output without writing it."""
        observed = await self.read_coil(address)
        reason = "" if observed == commanded else ("read_back_failed" if observed is None else "read_back_mismatch")
        return OutputFeedback(output, commanded=commanded, observed=observed, reason=reason)

    async def write_register(self, address: int, value: int) -> int | None:
        """FC06 then FC03; returns the value read back, None on a communication failure."""
        try:
            await self._bus.write_register(address, value, self.spec.unit_id, self.spec.timeout_s, self.spec.retries)
            regs = await self._bus.read(Table.HOLDING, address, 1, self.spec.unit_id, self.spec.timeout_s,
                                        self.spec.retries)
        except TransportError as exc:
            self._failed("write_register", exc)
            return None
        self._succeeded()
        return regs[0]

    async def heartbeat(self) -> bool:
        """Write the next counter value to the module's host-watchdog register (FC06).

        Call at <= watchdog timeout / 3. Returns False when the write failed: the module
        will then drop its outputs by itself when its timeout runs out.
        """
        if self._watchdog is None:
            raise ConfigError(f"outputs.{self.spec.id}", "heartbeat() needs watchdog_address")
        self._beat = (self._beat + 1) & 0xFFFF or 1  # never 0: some modules ignore a zero write
        try:
            await self._bus.write_register(self._watchdog, self._beat, self.spec.unit_id, self.spec.timeout_s, 0)
        except TransportError as exc:
            self._failed("heartbeat", exc)
            return False
        self._succeeded()
        return True

    async def clear_watchdog(self) -> bool:
        """Re-arm the outputs after a watchdog trip (write 1 to the clear register)."""
        if self._clear is None:
            raise ConfigError(f"outputs.{self.spec.id}", "clear_watchdog() needs clear_address")
        try:
            await self._bus.write_register(self._clear, 1, self.spec.unit_id, self.spec.timeout_s, self.spec.retries)
        except TransportError as exc:
            self._failed("clear_watchdog", exc)
            return False
        self._succeeded()
        return True


CoilWriter = RelayModuleClient
"""Alias: the same client, named for what it does to a plain coil."""

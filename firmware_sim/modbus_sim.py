"""Common machinery of the simulated Modbus field devices: a real pymodbus server plus fault knobs.

Built on pymodbus 3.16's `SimDevice` (not the deprecated `ModbusDeviceContext`): its four
separate blocks (coils, discrete inputs, holding, input registers) start at protocol
address 0, so register N of a vendor map is served at protocol address N with no +1
shift. One `SimCore` is kept for the life of the simulator so that values survive a
`disconnect()` (which closes the server and starts a new one on the same port).

How each fault is injected (all through pymodbus's documented hooks, no own framing):

* `drop` (no reply): `trace_packet` replaces the outgoing frame with nothing.
* `delay_s`: the datastore `action` hook awaits before the request is served.
* `corrupt`: `trace_packet` damages the outgoing frame: on RTU the CRC's last byte is
  flipped (a whole frame with a bad CRC); on TCP the frame loses its last two bytes
  (the MBAP length promises more than arrives: a short frame).
* `exception_code`: `trace_pdu` replaces the reply by an exception reply with that code
  (any 1..255, not only the codes pymodbus names).
* `disconnect(for_s)`: TCP: the server shuts down (open connections are closed, new ones
  refused) and listens again on the same port after `for_s`. RTU: a serial line cannot
  refuse, so the device goes silent for `for_s` (like a cut RS-485 pair).
* `frozen`: values set with the device's setters are held back (the sensor "hangs" and
  keeps reporting its last value) until unfrozen. The protocol still answers GOOD: only
  a stuck-value check in the core can see this fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

Kind = Literal["coil", "discrete", "holding", "input"]
_BLOCK = {"coil": "c", "discrete": "d", "holding": "h", "input": "i"}


@dataclass
class Faults:
    """The fault knobs; tests set them directly or through the helpers on `ModbusSim`."""

    drop: bool = False
    """Answer nothing."""
    delay_s: float = 0.0
    """Answer this late."""
    corrupt: bool = False
    """Bad CRC on RTU, a truncated frame on TCP."""
    exception_code: int | None = None
    """Answer every request with this Modbus exception code."""
    frozen: bool = False
    """Value setters are held back until unfrozen."""
    pending: dict[str, float] = field(default_factory=dict)


def bits_block(count: int) -> list[SimData]:
    """`count` bits starting at address 0 (rounded up to whole 16-bit words)."""
    return [SimData(0, count=max(16, (count + 15) // 16 * 16), values=False, datatype=DataType.BITS)]


def regs_block(count: int) -> list[SimData]:
    """`count` registers starting at address 0, all 0."""
    return [SimData(0, count=count, values=0, datatype=DataType.REGISTERS)]


def no_regs() -> list[SimData]:
    """An unused register table: every read answers "illegal data address" (code 2)."""
    return [SimData(0, count=1, datatype=DataType.INVALID)]


SHUTDOWN_S = 2.0
"""Longest wait for pymodbus to close a server (it can wait on a client that never leaves)."""


class ModbusSim:
    """A simulated device on Modbus TCP (127.0.0.1, port 0 allowed) or RTU (a serial path)."""

    def __init__(
        self,
        layout: tuple[list[SimData], list[SimData], list[SimData], list[SimData]],
        *,
        transport: Literal["tcp", "rtu"] = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str = "",
        baudrate: int = 19200,
        parity: str = "E",
        stopbits: int = 1,
        unit_id: int = 1,
    ) -> None:
        """`layout` is (coils, discrete inputs, holding registers, input registers)."""
        if transport == "rtu" and not serial_port:
            raise ValueError("ModbusSim(transport='rtu') needs serial_port (one end of a socat pty pair)")
        self.transport = transport
        self.host = host
        self.port = port
        """The bound TCP port once started (the real one when 0 was asked)."""
        self.serial_port = serial_port
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        self.unit_id = unit_id
        self.faults = Faults()
        self.requests: list[tuple[int, int, int]] = []
        """(function code, address, count) of every request received, for tests of block reads."""
        self._device = SimDevice(unit_id, simdata=layout, action=self._action)
        self._core = SimCore(self._device)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._reopen: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start serving (idempotent)."""
        if self._server is not None:
            return
        hooks: dict[str, Any] = {"trace_packet": self._trace_packet, "trace_pdu": self._trace_pdu}
        server: ModbusTcpServer | ModbusSerialServer
        if self.transport == "tcp":
            server = ModbusTcpServer(self._device, framer=FramerType.SOCKET, address=(self.host, self.port), **hooks)
        else:
            server = ModbusSerialServer(
                self._device, framer=FramerType.RTU, port=self.serial_port, baudrate=self.baudrate,
                parity=self.parity, stopbits=self.stopbits, **hooks,
            )
        server.context = self._core  # one datastore for the simulator's life: values survive restarts
        await server.serve_forever(background=True)
        self._server = server
        if self.transport == "tcp":
            sockets: Any = getattr(server.transport, "sockets", None)
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen
            self._reopen = None
        await self._shutdown()

    async def _shutdown(self) -> None:
        """Close the server, bounded: pymodbus may wait for a connected client indefinitely."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            async with asyncio.timeout(SHUTDOWN_S):
                await server.shutdown()  # type: ignore[no-untyped-call]
        except TimeoutError:
            transport: Any = getattr(server, "transport", None)
            if transport is not None:
                transport.close()  # stop listening; open connections die with their sockets

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def serving(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ fault knobs

    def clear_faults(self) -> None:
        """Back to a healthy device (also applies values held back while frozen)."""
        self.set_frozen(False)
        self.faults.drop = self.faults.corrupt = False
        self.faults.delay_s = 0.0
        self.faults.exception_code = None

    def set_drop(self, on: bool = True) -> None:
        self.faults.drop = on

    def set_delay(self, seconds: float) -> None:
        self.faults.delay_s = seconds

    def set_corrupt(self, on: bool = True) -> None:
        self.faults.corrupt = on

    def set_exception(self, code: int | None) -> None:
        if code is not None and not 1 <= code <= 255:
            raise ValueError(f"exception code {code} outside 1..255")
        self.faults.exception_code = code

    def set_frozen(self, on: bool = True) -> None:
        self.faults.frozen = on
        if not on:
            pending, self.faults.pending = self.faults.pending, {}
            for name, value in pending.items():
                self._apply_value(name, value)

    async def disconnect(self, for_s: float) -> None:
        """Close every connection and refuse new ones for `for_s` (RTU: go silent for `for_s`)."""
        if self.transport == "rtu":
            self.faults.drop = True

            async def _speak_again() -> None:
                await asyncio.sleep(for_s)
                self.faults.drop = False

            self._reopen = asyncio.create_task(_speak_again())
            return
        await self._shutdown()

        async def _listen_again() -> None:
            await asyncio.sleep(for_s)
            self._reopen = None
            await self.start()

        self._reopen = asyncio.create_task(_listen_again())

    # ------------------------------------------------------------------ values (subclasses)

    def set_value(self, name: str, value: float) -> None:
        """Set a named value (held back while frozen)."""
        if self.faults.frozen:
            self.faults.pending[name] = value
            return
        self._apply_value(name, value)

    def _apply_value(self, name: str, value: float) -> None:
        raise KeyError(f"{type(self).__name__} has no value {name!r}")

    def _block(self, kind: Kind) -> tuple[int, list[int]]:
        start, _n, regs, _flags = self._core.devices[self.unit_id].block[_BLOCK[kind]]
        return start, regs

    def reg(self, kind: Literal["holding", "input"], address: int) -> int:
        start, regs = self._block(kind)
        return regs[address - start]

    def set_reg(self, kind: Literal["holding", "input"], address: int, value: int) -> None:
        start, regs = self._block(kind)
        regs[address - start] = value & 0xFFFF

    def bit(self, kind: Literal["coil", "discrete"], address: int) -> bool:
        start, regs = self._block(kind)
        word = regs[address // 16 - start]
        return bool(word >> (address % 16) & 1)

    def set_bit(self, kind: Literal["coil", "discrete"], address: int, value: bool) -> None:
        start, regs = self._block(kind)
        i = address // 16 - start
        regs[i] = regs[i] | (1 << address % 16) if value else regs[i] & ~(1 << address % 16)

    # ------------------------------------------------------------------ hooks

    async def on_request(
        self, function_code: int, address: int, count: int, values: list[int] | list[bool] | None
    ) -> ExcCodes | None:
        """Subclass hook, called before a request touches the datastore; may change state."""
        return None

    async def _action(
        self, function_code: int, _start: int, address: int, count: int, _regs: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        return await self.on_request(function_code, address, count, values)

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.function_code, int(getattr(pdu, "address", 0)), int(getattr(pdu, "count", 0))))
            return pdu
        code = self.faults.exception_code
        if code is None:
            return pdu
        return ExceptionResponse(pdu.function_code & 0x7F, code, device_id=pdu.dev_id, transaction=pdu.transaction_id)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        if self.faults.drop:
            return b""
        if self.faults.corrupt:
            return data[:-1] + bytes([data[-1] ^ 0xFF]) if self.transport == "rtu" else data[:-2]
        return data


"""One shared medium (a serial line or a TCP endpoint): its lock, its client, its transactions.

This is the only module that touches pymodbus. Its exceptions and `isError()` replies are
translated here into `TransportError(reason)`; nothing of pymodbus leaves this file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from rules.events import BadReason

from .codec import Table, classify_no_reply
from .errors import ConfigError, TransportError
from .spec import DeviceSpec

log = structlog.get_logger("drivers.modbus.bus")

_RETRYABLE = (BadReason.TIMEOUT, BadReason.CRC, BadReason.SHORT_FRAME, BadReason.BAD_PAYLOAD)


class Bus:
    """A serial line or TCP endpoint shared by every device and writer on it.

    All transactions go through `lock`, so two devices on one RS-485 line never talk at
    once, and on RTU the inter-frame silence is kept between them.
    """

    def __init__(self, spec: DeviceSpec) -> None:
        self.key = spec.bus_key
        """Serial port path or host:port."""
        self.lock = asyncio.Lock()
        """Held for the whole of a transaction (and its retries)."""
        self.rtu = spec.transport == "rtu"
        self._spec = spec
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._rx = bytearray()  # raw bytes received since the last request: tells timeout/CRC/short apart
        self._last_io = -1e9
        self.gap_s = spec.frame_gap_s

    def check_compatible(self, spec: DeviceSpec) -> None:
        """Two devices on one serial line must agree on its settings."""
        mine = self._spec
        if self.rtu and (mine.baudrate, mine.parity, mine.stopbits) != (spec.baudrate, spec.parity, spec.stopbits):
            raise ConfigError(
                f"devices.{spec.id}",
                f"serial line {self.key} is already used by {mine.id} at {mine.baudrate} {mine.parity} "
                f"{mine.stopbits}: use the same settings for every device on one line",
            )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx.clear()
        else:
            self._rx += data
        return data

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        s = self._spec
        common: dict[str, Any] = {
            "timeout": s.timeout_s,
            "retries": 0,  # retries are ours: counted, classified, and under our lock
            "reconnect_delay": 0,  # reconnection is ours too (jittered backoff in the source)
            "trace_packet": self._trace_packet,
        }
        if self.rtu:
            return AsyncModbusSerialClient(
                s.serial_port, framer=FramerType.RTU, baudrate=s.baudrate, parity=s.parity,
                stopbits=s.stopbits, bytesize=8, **common,
            )
        return AsyncModbusTcpClient(s.host, port=s.port, framer=FramerType.SOCKET, **common)

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def close(self) -> None:
        """Drop the connection (the next transaction reconnects)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _ensure(self, timeout_s: float) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = self._new_client()
        try:
            async with asyncio.timeout(timeout_s + 1.0):
                ok = await client.connect()
        except Exception as exc:  # OSError, ModbusException, TimeoutError, or a library defect: all "not connected"
            client.close()
            raise TransportError(self.key, BadReason.DISCONNECTED, f"connect failed: {exc!r}") from exc
        if not ok:
            client.close()
            raise TransportError(self.key, BadReason.DISCONNECTED, "connect refused or port unavailable")
        self._client = client
        return client

    async def _quiet_line(self) -> None:
        if self.rtu:
            wait = self._last_io + self.gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _transact(
        self,
        call: Callable[[Any], Awaitable[Any]],
        function_code: int,
        count: int,
        timeout_s: float,
        retries: int,
    ) -> Any:
        """Run one request (with retries) under the bus lock; return the pymodbus reply or raise TransportError."""
        async with self.lock:
            last: TransportError | None = None
            for _attempt in range(retries + 1):
                client = await self._ensure(timeout_s)
                await self._quiet_line()
                try:
                    async with asyncio.timeout(timeout_s * 2 + 0.5):  # safety net over pymodbus's own timeout
                        reply = await call(client)
                except ConnectionException as exc:
                    self.close()
                    raise TransportError(self.key, BadReason.DISCONNECTED, str(exc)) from exc
                except (ModbusIOException, TimeoutError) as exc:
                    reason = classify_no_reply(bytes(self._rx), function_code, count, self.rtu)
                    if reason is BadReason.TIMEOUT and not self.connected:
                        reason = BadReason.DISCONNECTED  # the peer closed the connection under us
                    last = TransportError(self.key, reason, f"fc{function_code}: {exc}")
                    if not self.rtu or not self.connected:
                        # a late reply on TCP would be taken for the next one: start a fresh connection
                        self.close()
                    if reason not in _RETRYABLE:
                        raise last from exc  # e.g. the peer hung up: retrying on this request is pointless
                    continue
                except ModbusException as exc:
                    self.close()
                    last = TransportError(self.key, BadReason.BAD_PAYLOAD, f"fc{function_code}: {exc}")
                    continue
                except OSError as exc:
                    self.close()
                    raise TransportError(self.key, BadReason.DISCONNECTED, str(exc)) from exc
                except Exception as exc:  # a library defect or a reply it cannot handle: this device's fault
                    self.close()
                    log.error("modbus_unexpected_error", bus=self.key, function_code=function_code, exc_info=exc)
                    raise TransportError(self.key, BadReason.BAD_PAYLOAD, f"unexpected {type(exc).__name__}: {exc}") \
                        from exc
                finally:
                    self._last_io = time.monotonic()
                if reply.isError():
                    code = int(getattr(reply, "exception_code", 0))
                    raise TransportError(self.key, BadReason.EXCEPTION_CODE, str(code))
                return reply
            # Only retryable failures reach here, and at least one attempt ran (retries >= 0).
            raise last if last is not None else TransportError(self.key, BadReason.TIMEOUT, "no attempt made")

    async def read(
        self, table: Table, address: int, count: int, unit: int, timeout_s: float, retries: int
    ) -> list[int]:
        """Read `count` registers (or bits, as 0/1) of `table` starting at `address`."""
        fc = table.read_function
        methods = {
            1: lambda c: c.read_coils(address, count=count, device_id=unit),
            2: lambda c: c.read_discrete_inputs(address, count=count, device_id=unit),
            3: lambda c: c.read_holding_registers(address, count=count, device_id=unit),
            4: lambda c: c.read_input_registers(address, count=count, device_id=unit),
        }
        reply = await self._transact(methods[fc], fc, count, timeout_s, retries)
        values = [int(b) for b in reply.bits] if table.is_bits else list(reply.registers)
        if len(values) < count:
            raise TransportError(self.key, BadReason.SHORT_FRAME, f"fc{fc}: asked {count}, got {len(values)}")
        return values[:count]

    async def write_coil(self, address: int, value: bool, unit: int, timeout_s: float, retries: int) -> None:
        """FC05. The echo proves nothing about the contact: read back afterwards."""
        await self._transact(lambda c: c.write_coil(address, value, device_id=unit), 5, 1, timeout_s, retries)

    async def write_register(self, address: int, value: int, unit: int, timeout_s: float, retries: int) -> None:
        """FC06."""
        if not 0 <= value <= 0xFFFF:
            raise ConfigError(f"bus {self.key}", f"register value {value} outside 0..65535")
        await self._transact(lambda c: c.write_register(address, value, device_id=unit), 6, 1, timeout_s, retries)


class BusRegistry:
    """One `Bus` per serial port path or host:port, shared by sources and writers."""

    def __init__(self) -> None:
        self._buses: dict[str, Bus] = {}

    def bus(self, spec: DeviceSpec) -> Bus:
        """The bus `spec` lives on (created on first use)."""
        bus = self._buses.get(spec.bus_key)
        if bus is None:
            bus = self._buses[spec.bus_key] = Bus(spec)
        else:
            bus.check_compatible(spec)
        return bus

    def lock(self, spec: DeviceSpec) -> asyncio.Lock:
        """The lock of the bus `spec` lives on."""
        return self.bus(spec).lock

    def close(self) -> None:
        """Close every connection (at shutdown)."""
        for bus in self._buses.values():
            bus.close()

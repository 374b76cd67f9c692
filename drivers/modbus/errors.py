"""Errors of the Modbus driver: small classes carrying fields.

Field faults (timeout, CRC, exception codes, silence) never escape the driver as
exceptions: the source turns them into `Reading(quality=BAD)`. These classes carry the
fault from the place it is found to the place that turns it into an event.
"""

from __future__ import annotations

from rules.events import BadReason


class ModbusDriverError(Exception):
    """Base of every error raised inside drivers/modbus."""


class CodecError(ModbusDriverError):
    """Registers could not be turned into a value (pure decode failure)."""

    def __init__(self, reason: BadReason, detail: str = "") -> None:
        self.reason = reason
        """Why: becomes the BAD reading's reason."""
        self.detail = detail
        """Where and what, for the log and the reason suffix."""
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)

    @property
    def reason_text(self) -> str:
        """`reason` or `reason:detail` as carried by `Reading.reason`."""
        return f"{self.reason.value}:{self.detail}" if self.detail else self.reason.value


class TransportError(ModbusDriverError):
    """One Modbus transaction failed (translated from pymodbus at the bus boundary)."""

    def __init__(self, bus: str, reason: BadReason, detail: str = "") -> None:
        self.bus = bus
        """The bus key (serial port path or host:port)."""
        self.reason = reason
        self.detail = detail
        """For EXCEPTION_CODE: the code as a decimal string; otherwise free text."""
        super().__init__(f"modbus bus {bus}: {reason.value}" + (f" ({detail})" if detail else ""))

    @property
    def reason_text(self) -> str:
        """Reason as carried by `Reading.reason`: `exception_code:2`, `timeout`, ..."""
        if self.reason is BadReason.EXCEPTION_CODE:
            return f"{self.reason.value}:{self.detail}"
        return self.reason.value


class ConfigError(ModbusDriverError, ValueError):
    """A device or point specification is inconsistent; the message names the place and the fix."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")

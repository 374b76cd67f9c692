"""Modbus TCP/RTU driver: a pure codec, a polling source and an output writer."""

from .bus import Bus, BusRegistry
from .codec import (
    Block,
    ByteOrder,
    DataType,
    DeviceHealth,
    PointSpec,
    StatusSpec,
    Table,
    WordOrder,
    decode,
    decode_status,
    plan_blocks,
    register_count,
)
from .errors import CodecError, ConfigError, ModbusDriverError, TransportError
from .source import ModbusSource
from .spec import DeviceSpec
from .writer import CoilWriter, RelayModuleClient

__all__ = [
    "Block",
    "Bus",
    "BusRegistry",
    "ByteOrder",
    "CodecError",
    "CoilWriter",
    "ConfigError",
    "DataType",
    "DeviceHealth",
    "DeviceSpec",
    "ModbusDriverError",
    "ModbusSource",
    "PointSpec",
    "RelayModuleClient",
    "StatusSpec",
    "Table",
    "TransportError",
    "WordOrder",
    "decode",
    "decode_status",
    "plan_blocks",
    "register_count",
]

"""Pure Modbus codec: registers -> values, block planning, status words, silence classification.

No I/O, no clock, no logging. Everything here is decided from its arguments alone, so
it is tested with tables of registers/bytes in and values out.

Conventions
-----------
* Addresses are 0-based *protocol* addresses (what goes on the wire), never the
  "40001" style register numbers of vendor manuals.
* A register is an int in 0..65535 as delivered by the transport; bit tables (coils,
  discrete inputs) deliver 0/1 per address.
* Byte order is the order of the two bytes inside each 16-bit register (Modbus sends
  big-endian); word order is the order of the registers of a 32-bit value. ABCD =
  big/big, CDAB = word little, BADC = byte little, DCBA = both little.
* Status date registers hold uint32 **unix seconds** (UTC), two registers, high word
  first: seconds, not days, because "bump test due every 24 h" needs sub-day resolution.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from rules.events import BadReason

from .errors import CodecError, ConfigError

MAX_REGS_PER_READ = 125
"""FC03/FC04 limit of the Modbus spec."""
MAX_BITS_PER_READ = 2000
"""FC01/FC02 limit of the Modbus spec."""

NE43_LOW_MA = 3.6
"""NAMUR NE43: below this the loop signals a fault (wire break, transmitter failure)."""
NE43_HIGH_MA = 21.0
"""NAMUR NE43: above this the loop signals a fault (short circuit, transmitter failure)."""


class Table(StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def read_function(self) -> int:
        """Function code that reads this table."""
        return _READ_FC[self]


_READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class WordOrder(StrEnum):
    """Order of the registers of a 32-bit value: BIG = high word first."""

    BIG = "big"
    LITTLE = "little"


class ByteOrder(StrEnum):
    """Order of the bytes inside one register: BIG = as Modbus sends them."""

    BIG = "big"
    LITTLE = "little"


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


def register_count(dtype: DataType) -> int:
    """Registers a value of `dtype` occupies."""
    return 1 if dtype in (DataType.INT16, DataType.UINT16) else 2


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Where one signal lives in a device and how to turn its registers into a value."""

    signal: str
    """Signal id from the configuration; becomes `Reading.signal`."""
    table: Table
    address: int
    """0-based protocol address of the first register (or bit)."""
    dtype: DataType = DataType.UINT16
    """Ignored for coils/discrete inputs (one bit, read as 0 or 1)."""
    word_order: WordOrder = WordOrder.BIG
    byte_order: ByteOrder = ByteOrder.BIG
    scale: float = 1.0
    """Engineering value = raw * scale + offset (for a current loop: mA = raw * scale + offset)."""
    offset: float = 0.0
    unit: str = ""
    """Unit of the engineering value, e.g. "%vol", "ppm", "degC"."""
    current_loop: tuple[float, float] | None = None
    """When set, the register holds loop current (mA after scale/offset) and (lo, hi) is the
    engineering value at 4 mA and 20 mA. NAMUR NE43: < 3.6 mA or > 21 mA is a loop fault."""

    def __post_init__(self) -> None:
        where = f"point {self.signal or '?'}"
        if not self.signal:
            raise ConfigError(where, "signal must not be empty")
        if not 0 <= self.address <= 65535:
            raise ConfigError(where, f"address {self.address} outside 0..65535 (use the 0-based protocol address)")
        if self.address + self.count - 1 > 65535:
            raise ConfigError(where, f"{self.dtype} at {self.address} runs past address 65535")
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ConfigError(where, f"scale must be finite, non-zero; offset finite (got {self.scale}, {self.offset})")
        if self.current_loop is not None:
            lo, hi = self.current_loop
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
                raise ConfigError(where, f"current_loop needs two different finite values, got {self.current_loop}")
            if self.table.is_bits:
                raise ConfigError(where, "a current loop needs a register table (holding or input), not bits")

    @property
    def count(self) -> int:
        """Registers (or bits) this point occupies."""
        return 1 if self.table.is_bits else register_count(self.dtype)

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count


def _raw(spec: PointSpec, regs: Sequence[int]) -> float:
    n = spec.count
    if len(regs) < n:
        raise CodecError(BadReason.SHORT_FRAME, f"{spec.signal}: need {n} register(s), got {len(regs)}")
    words = list(regs[:n])
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise CodecError(BadReason.BAD_PAYLOAD, f"{spec.signal}: register value {w} outside 0..65535")
    if spec.table.is_bits:
        if words[0] not in (0, 1):
            raise CodecError(BadReason.BAD_PAYLOAD, f"{spec.signal}: bit value {words[0]} is not 0/1")
        return float(words[0])
    if spec.word_order is WordOrder.LITTLE:
        words.reverse()
    data = b"".join(w.to_bytes(2, "big" if spec.byte_order is ByteOrder.BIG else "little") for w in words)
    value = float(struct.unpack(_STRUCT[spec.dtype], data)[0])
    if not math.isfinite(value):
        raise CodecError(BadReason.NOT_A_NUMBER, f"{spec.signal}: float32 is {value}")
    return value


def decode(spec: PointSpec, regs: Sequence[int]) -> float:
    """Registers (starting at `spec.address`) -> engineering value, or raise CodecError."""
    scaled = _finite(spec, _raw(spec, regs) * spec.scale + spec.offset)
    if spec.current_loop is None:
        return scaled
    ma = scaled
    if ma < NE43_LOW_MA or ma > NE43_HIGH_MA:
        raise CodecError(BadReason.LOOP_FAULT, f"{spec.signal}: {ma:.3f} mA outside {NE43_LOW_MA}..{NE43_HIGH_MA}")
    lo, hi = spec.current_loop
    return _finite(spec, lo + (ma - 4.0) / 16.0 * (hi - lo))


def _finite(spec: PointSpec, v: float) -> float:
    """Scaling can overflow a finite register value to inf: that is over range, never a value."""
    if not math.isfinite(v):
        raise CodecError(BadReason.OVER_RANGE, f"{spec.signal}: scaled value is {v} (check scale/offset/range)")
    return v


# --------------------------------------------------------------------------- status word


@dataclass(frozen=True, slots=True)
class StatusSpec:
    """A device's status register and, optionally, its bump-test and calibration dates."""

    address: int
    """0-based address of the 16-bit status word."""
    table: Table = Table.HOLDING
    warm_up_mask: int = 0x0001
    fault_mask: int = 0x0002
    over_range_mask: int = 0x0004
    """Device-wide: when set, every reading of the device is BAD over_range."""
    bump_address: int | None = None
    """uint32 unix seconds (high word first) of the last passed bump test."""
    calibration_address: int | None = None
    """uint32 unix seconds (high word first) of the last calibration."""
    bump_signal: str = ""
    """When set, the bump date is emitted as a Reading of this signal (value: unix seconds)."""
    calibration_signal: str = ""
    """When set, the calibration date is emitted as a Reading of this signal (value: unix seconds)."""

    def __post_init__(self) -> None:
        if self.table.is_bits:
            raise ConfigError("status", "the status word lives in a register table (holding or input)")
        for name, mask in (
            ("warm_up_mask", self.warm_up_mask),
            ("fault_mask", self.fault_mask),
            ("over_range_mask", self.over_range_mask),
        ):
            if not 0 <= mask <= 0xFFFF:
                raise ConfigError(f"status.{name}", f"mask {mask:#x} does not fit a 16-bit register")
        if self.bump_signal and self.bump_address is None:
            raise ConfigError("status.bump_signal", "set bump_address too")
        if self.calibration_signal and self.calibration_address is None:
            raise ConfigError("status.calibration_signal", "set calibration_address too")


STATUS_SIGNAL = "__status__"
BUMP_SIGNAL = "__bump__"
CALIBRATION_SIGNAL = "__calibration__"


def status_points(status: StatusSpec) -> tuple[PointSpec, ...]:
    """The status registers as internal points, so that they join the block plan."""
    pts = [PointSpec(STATUS_SIGNAL, status.table, status.address, DataType.UINT16)]
    if status.bump_address is not None:
        pts.append(PointSpec(BUMP_SIGNAL, status.table, status.bump_address, DataType.UINT32))
    if status.calibration_address is not None:
        pts.append(PointSpec(CALIBRATION_SIGNAL, status.table, status.calibration_address, DataType.UINT32))
    return tuple(pts)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """What the status registers say."""

    raw: int
    """The status word as read."""
    warm_up: bool
    fault: bool
    over_range: bool
    bump_utc_s: int | None = None
    """Unix seconds of the last bump test, None when not configured or zero (never done)."""
    calibration_utc_s: int | None = None

    @property
    def bad_reason(self) -> BadReason | None:
        """The reason every reading of the device is BAD, worst first; None when healthy."""
        if self.fault:
            return BadReason.DEVICE_FAULT
        if self.warm_up:
            return BadReason.WARMUP
        if self.over_range:
            return BadReason.OVER_RANGE
        return None


def decode_status(status: StatusSpec, values: Mapping[str, Sequence[int]]) -> DeviceHealth:
    """Decode the status point registers (keyed by the internal signals of `status_points`)."""
    word = int(_raw(PointSpec(STATUS_SIGNAL, status.table, status.address), values.get(STATUS_SIGNAL, ())))

    def date(signal: str, address: int | None) -> int | None:
        if address is None:
            return None
        secs = int(_raw(PointSpec(signal, status.table, address, DataType.UINT32), values.get(signal, ())))
        return secs or None

    return DeviceHealth(
        raw=word,
        warm_up=bool(word & status.warm_up_mask),
        fault=bool(word & status.fault_mask),
        over_range=bool(word & status.over_range_mask),
        bump_utc_s=date(BUMP_SIGNAL, status.bump_address),
        calibration_utc_s=date(CALIBRATION_SIGNAL, status.calibration_address),
    )


# --------------------------------------------------------------------------- block planning


@dataclass(frozen=True, slots=True)
class Block:
    """One read request covering several points of one table."""

    table: Table
    start: int
    count: int
    points: tuple[PointSpec, ...]

    def slice_for(self, point: PointSpec, values: Sequence[int]) -> Sequence[int]:
        """The part of a block's values that belongs to `point` (may be short if the reply was)."""
        lo = point.address - self.start
        return values[lo : lo + point.count]


def plan_blocks(points: Iterable[PointSpec], max_gap: int = 0, max_regs: int = MAX_REGS_PER_READ) -> tuple[Block, ...]:
    """Merge points of the same table into as few reads as the limits allow.

    Two points share a read when the hole between them is at most `max_gap` registers
    (reading a few unused registers is cheaper than another round trip, but some devices
    answer "illegal address" for holes: keep `max_gap=0` for those) and the read stays
    within `max_regs` registers (`MAX_BITS_PER_READ` for bit tables).
    """
    if max_gap < 0 or not 1 <= max_regs <= MAX_REGS_PER_READ:
        raise ConfigError("plan_blocks", f"max_gap must be >= 0 and max_regs in 1..125, got {max_gap}, {max_regs}")
    by_table: dict[Table, list[PointSpec]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    blocks: list[Block] = []
    for table in Table:
        pts = sorted(by_table.get(table, ()), key=lambda p: (p.address, p.end))
        limit = MAX_BITS_PER_READ if table.is_bits else max_regs
        cur: list[PointSpec] = []
        start = end = 0
        for p in pts:
            if p.count > limit:
                raise ConfigError(f"point {p.signal}", f"needs {p.count} registers, more than one read ({limit})")
            if cur and p.address - end <= max_gap and max(end, p.end) - start <= limit:
                cur.append(p)
                end = max(end, p.end)
                continue
            if cur:
                blocks.append(Block(table, start, end - start, tuple(cur)))
            cur, start, end = [p], p.address, p.end
        if cur:
            blocks.append(Block(table, start, end - start, tuple(cur)))
    return tuple(blocks)


# --------------------------------------------------------------------------- silence


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (poly 0xA001, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def crc_ok(frame: bytes) -> bool:
    """True when the last two bytes of an RTU frame are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]).to_bytes(2, "little") == frame[-2:]


def expected_reply_len(function_code: int, count: int, rtu: bool) -> int:
    """Length of a complete normal reply on the wire (RTU: with address and CRC; TCP: with MBAP)."""
    if function_code in (1, 2):
        pdu = 2 + (count + 7) // 8
    elif function_code in (3, 4):
        pdu = 2 + 2 * count
    else:  # FC05/06/15/16 echo address + value/quantity
        pdu = 5
    return 1 + pdu + 2 if rtu else 7 + pdu


def classify_no_reply(received: bytes, function_code: int, count: int, rtu: bool) -> BadReason:
    """Why a transaction got no usable reply, judged from the bytes that did arrive.

    Nothing at all is a timeout; a frame of full length with a wrong CRC is a CRC error;
    anything else (a part of a frame, garbage) is a short frame.
    """
    if not received:
        return BadReason.TIMEOUT
    is_exception = len(received) == 5 and received[1] & 0x80
    if rtu and (len(received) == expected_reply_len(function_code, count, rtu) or is_exception):
        # a whole frame arrived: either its CRC is wrong, or it was sound but not an answer to us
        return BadReason.BAD_PAYLOAD if crc_ok(received) else BadReason.CRC
    return BadReason.SHORT_FRAME

"""Pure codec: tables of registers/bytes in, values out (no I/O, no event loop)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from pymodbus.framer import FramerRTU

from drivers.modbus.codec import (
    BUMP_SIGNAL,
    CALIBRATION_SIGNAL,
    STATUS_SIGNAL,
    Block,
    ByteOrder,
    DataType,
    DeviceHealth,
    PointSpec,
    StatusSpec,
    Table,
    WordOrder,
    classify_no_reply,
    crc16,
    crc_ok,
    decode,
    decode_status,
    expected_reply_len,
    plan_blocks,
    register_count,
    status_points,
)
from drivers.modbus.errors import CodecError, ConfigError
from drivers.modbus.source import backoff_delay
from drivers.modbus.spec import DeviceSpec
from rules.events import BadReason

H = Table.HOLDING
BIG, LIT = WordOrder.BIG, WordOrder.LITTLE
BBIG, BLIT = ByteOrder.BIG, ByteOrder.LITTLE


def regs(data: bytes) -> list[int]:
    """Wire bytes -> registers as the transport delivers them (big-endian per register)."""
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@pytest.mark.parametrize(("dtype", "n"), [(DataType.INT16, 1), (DataType.UINT16, 1), (DataType.INT32, 2),
                                          (DataType.UINT32, 2), (DataType.FLOAT32, 2)])
def test_register_count(dtype: DataType, n: int) -> None:
    assert register_count(dtype) == n


F = struct.pack(">f", 20.5)  # 41 A4 00 00
DECODE_TABLE = [
    # (dtype, word order, byte order, wire bytes, scale, offset, expected)
    (DataType.INT16, BIG, BBIG, b"\xff\x38", 1.0, 0.0, -200.0),
    (DataType.INT16, BIG, BBIG, b"\x00\xd1", 0.1, 0.0, 20.9),
    (DataType.UINT16, BIG, BBIG, b"\xff\x38", 1.0, 0.0, 65336.0),
    (DataType.UINT16, BIG, BLIT, b"\x38\xff", 1.0, 0.0, 65336.0),
    (DataType.UINT16, BIG, BBIG, b"\x01\xf4", 0.5, -10.0, 240.0),
    (DataType.INT32, BIG, BBIG, b"\xff\xff\xff\xfe", 1.0, 0.0, -2.0),
    (DataType.INT32, LIT, BBIG, b"\xff\xfe\xff\xff", 1.0, 0.0, -2.0),
    (DataType.UINT32, BIG, BBIG, b"\x00\x01\x00\x02", 1.0, 0.0, 65538.0),
    (DataType.UINT32, LIT, BBIG, b"\x00\x02\x00\x01", 1.0, 0.0, 65538.0),  # CDAB
    (DataType.UINT32, BIG, BLIT, b"\x01\x00\x02\x00", 1.0, 0.0, 65538.0),  # BADC
    (DataType.UINT32, LIT, BLIT, b"\x02\x00\x01\x00", 1.0, 0.0, 65538.0),  # DCBA
    (DataType.FLOAT32, BIG, BBIG, F, 1.0, 0.0, 20.5),  # ABCD
    (DataType.FLOAT32, LIT, BBIG, F[2:] + F[:2], 1.0, 0.0, 20.5),  # CDAB
    (DataType.FLOAT32, BIG, BLIT, F[1::-1] + F[3:1:-1], 1.0, 0.0, 20.5),  # BADC
    (DataType.FLOAT32, LIT, BLIT, F[::-1], 1.0, 0.0, 20.5),  # DCBA
    (DataType.FLOAT32, BIG, BBIG, struct.pack(">f", -0.0), 1.0, 0.0, 0.0),
]


@pytest.mark.parametrize(("dtype", "wo", "bo", "data", "scale", "offset", "expected"), DECODE_TABLE)
def test_decode_table(dtype: DataType, wo: WordOrder, bo: ByteOrder, data: bytes, scale: float,
                      offset: float, expected: float) -> None:
    spec = PointSpec("x", H, 7, dtype, wo, bo, scale=scale, offset=offset)
    assert decode(spec, regs(data)) == pytest.approx(expected)


def test_decode_ignores_registers_past_the_point() -> None:
    assert decode(PointSpec("x", H, 0, DataType.INT16), [5, 9, 9]) == 5.0


@pytest.mark.parametrize(("table", "bit", "expected"), [(Table.COIL, 1, 1.0), (Table.DISCRETE, 0, 0.0)])
def test_decode_bits(table: Table, bit: int, expected: float) -> None:
    assert decode(PointSpec("b", table, 3), [bit]) == expected


BAD_TABLE = [
    # (spec, registers, reason)
    (PointSpec("x", H, 0, DataType.FLOAT32), [0x41A4], BadReason.SHORT_FRAME),  # truncated: 1 of 2
    (PointSpec("x", H, 0, DataType.UINT32), [], BadReason.SHORT_FRAME),
    (PointSpec("x", H, 0, DataType.INT16), [], BadReason.SHORT_FRAME),
    (PointSpec("x", H, 0, DataType.UINT16), [70000], BadReason.BAD_PAYLOAD),  # corrupt: not a register
    (PointSpec("x", H, 0, DataType.UINT16), [-1], BadReason.BAD_PAYLOAD),
    (PointSpec("b", Table.COIL, 0), [2], BadReason.BAD_PAYLOAD),
    (PointSpec("x", H, 0, DataType.FLOAT32), regs(struct.pack(">f", math.nan)), BadReason.NOT_A_NUMBER),
    (PointSpec("x", H, 0, DataType.FLOAT32), regs(struct.pack(">f", math.inf)), BadReason.NOT_A_NUMBER),
    (PointSpec("x", H, 0, DataType.FLOAT32), regs(struct.pack(">f", -math.inf)), BadReason.NOT_A_NUMBER),
    (PointSpec("x", H, 0, DataType.FLOAT32), [0x7FC0, 0x0000], BadReason.NOT_A_NUMBER),
]


@pytest.mark.parametrize(("spec", "values", "reason"), BAD_TABLE)
def test_decode_rejects(spec: PointSpec, values: list[int], reason: BadReason) -> None:
    with pytest.raises(CodecError) as err:
        decode(spec, values)
    assert err.value.reason is reason
    assert err.value.reason_text.startswith(reason.value + ":")


LOOP = PointSpec("t", Table.INPUT, 0, DataType.UINT16, scale=0.001, unit="degC", current_loop=(-50.0, 150.0))


@pytest.mark.parametrize(("raw_ua", "expected"), [
    (4000, -50.0), (20000, 150.0), (12000, 50.0), (3600, -55.0), (21000, 162.5), (3800, -52.5),
])
def test_current_loop_in_range(raw_ua: int, expected: float) -> None:
    assert decode(LOOP, [raw_ua]) == pytest.approx(expected)


@pytest.mark.parametrize("raw_ua", [3599, 0, 21001, 24000, 65535])
def test_current_loop_ne43_fault(raw_ua: int) -> None:
    with pytest.raises(CodecError) as err:
        decode(LOOP, [raw_ua])
    assert err.value.reason is BadReason.LOOP_FAULT


def test_current_loop_reversed_range() -> None:
    spec = PointSpec("v", Table.INPUT, 0, DataType.UINT16, scale=0.001, current_loop=(100.0, 0.0))
    assert decode(spec, [8000]) == pytest.approx(75.0)


@pytest.mark.parametrize("kwargs", [
    {"signal": ""},
    {"address": -1},
    {"address": 65536},
    {"address": 65535, "dtype": DataType.FLOAT32},
    {"scale": 0.0},
    {"offset": math.nan},
    {"current_loop": (4.0, 4.0)},
    {"table": Table.COIL, "current_loop": (0.0, 1.0)},
])
def test_point_spec_rejects(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"signal": "p", "table": H, "address": 0, "dtype": DataType.UINT16}
    base.update(kwargs)
    with pytest.raises(ConfigError):
        PointSpec(**base)  # type: ignore[arg-type]


def _p(sig: str, addr: int, dtype: DataType = DataType.UINT16, table: Table = H) -> PointSpec:
    return PointSpec(sig, table, addr, dtype)


def _shape(blocks: tuple[Block, ...]) -> list[tuple[str, int, int, tuple[str, ...]]]:
    return [(b.table.value, b.start, b.count, tuple(p.signal for p in b.points)) for b in blocks]


PLAN_TABLE = [
    # (points, max_gap, max_regs, expected blocks)
    ([_p("a", 0), _p("b", 1), _p("c", 2, DataType.FLOAT32)], 0, 125, [("holding", 0, 4, ("a", "b", "c"))]),
    ([_p("b", 5), _p("a", 0)], 0, 125, [("holding", 0, 1, ("a",)), ("holding", 5, 1, ("b",))]),
    ([_p("b", 5), _p("a", 0)], 4, 125, [("holding", 0, 6, ("a", "b"))]),
    ([_p("b", 5), _p("a", 0)], 3, 125, [("holding", 0, 1, ("a",)), ("holding", 5, 1, ("b",))]),
    ([_p("a", 0), _p("b", 0, table=Table.INPUT)], 10, 125,
     [("holding", 0, 1, ("a",)), ("input", 0, 1, ("b",))]),
    ([_p("a", 0), _p("b", 2), _p("c", 4)], 5, 4, [("holding", 0, 3, ("a", "b")), ("holding", 4, 1, ("c",))]),
    ([_p("a", 0, DataType.UINT32), _p("b", 1)], 0, 125, [("holding", 0, 2, ("a", "b"))]),  # overlap
    ([_p("x", 3, table=Table.COIL), _p("y", 4, table=Table.COIL), _p("z", 9, table=Table.DISCRETE)], 0, 125,
     [("coil", 3, 2, ("x", "y")), ("discrete", 9, 1, ("z",))]),
    ([], 0, 125, []),
]


@pytest.mark.parametrize(("points", "gap", "max_regs", "expected"), PLAN_TABLE)
def test_plan_blocks(points: list[PointSpec], gap: int, max_regs: int,
                     expected: list[tuple[str, int, int, tuple[str, ...]]]) -> None:
    assert _shape(plan_blocks(points, gap, max_regs)) == expected


def test_plan_blocks_respects_125_and_slices() -> None:
    points = [_p(f"s{i}", i * 2, DataType.FLOAT32) for i in range(100)]  # 200 registers
    blocks = plan_blocks(points)
    assert [b.count for b in blocks] == [124, 76]
    values = list(range(200))
    b = blocks[1]
    assert list(b.slice_for(b.points[0], values[b.start : b.start + b.count])) == [124, 125]


def test_plan_blocks_rejects_bad_limits() -> None:
    with pytest.raises(ConfigError):
        plan_blocks([], max_gap=-1)
    with pytest.raises(ConfigError):
        plan_blocks([], max_regs=126)


STATUS = StatusSpec(0, bump_address=10, calibration_address=12)


@pytest.mark.parametrize(("word", "health_reason"), [
    (0x0000, None), (0x0001, BadReason.WARMUP), (0x0002, BadReason.DEVICE_FAULT),
    (0x0004, BadReason.OVER_RANGE), (0x0007, BadReason.DEVICE_FAULT), (0x0005, BadReason.WARMUP),
    (0x8000, None),
])
def test_decode_status_bits(word: int, health_reason: BadReason | None) -> None:
    h = decode_status(STATUS, {STATUS_SIGNAL: [word], BUMP_SIGNAL: [0x6553, 0xF100],
                               CALIBRATION_SIGNAL: [0, 0]})
    assert h.bad_reason is health_reason
    assert (h.raw, h.bump_utc_s, h.calibration_utc_s) == (word, 1_700_000_000, None)


def test_decode_status_short_raises() -> None:
    with pytest.raises(CodecError) as err:
        decode_status(STATUS, {STATUS_SIGNAL: [0], BUMP_SIGNAL: [1]})
    assert err.value.reason is BadReason.SHORT_FRAME


def test_status_points_and_health() -> None:
    assert [p.signal for p in status_points(STATUS)] == [STATUS_SIGNAL, BUMP_SIGNAL, CALIBRATION_SIGNAL]
    assert DeviceHealth(0, False, False, False).bad_reason is None
    with pytest.raises(ConfigError):
        StatusSpec(0, bump_signal="b")
    with pytest.raises(ConfigError):
        StatusSpec(0, table=Table.COIL)


def _rtu(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


def test_crc16_known_vector_and_pymodbus_agree() -> None:
    assert _rtu(bytes.fromhex("010300000001")) == bytes.fromhex("010300000001840a")
    for _ in range(50):
        data = random.Random(7).randbytes(12)
        assert crc16(data) == int.from_bytes(FramerRTU.compute_CRC(data).to_bytes(2, "big"), "little")
    assert crc_ok(bytes.fromhex("010300000001840a"))
    assert not crc_ok(bytes.fromhex("010300000001840b"))


GOOD_REPLY = _rtu(bytes.fromhex("010304") + b"\x00\xd1\x00\x00")  # FC03, 2 registers
CLASSIFY_TABLE = [
    (b"", 3, 2, True, BadReason.TIMEOUT),
    (b"", 3, 2, False, BadReason.TIMEOUT),
    (GOOD_REPLY[:-1] + b"\x00", 3, 2, True, BadReason.CRC),
    (GOOD_REPLY[:5], 3, 2, True, BadReason.SHORT_FRAME),
    (GOOD_REPLY, 3, 2, True, BadReason.BAD_PAYLOAD),  # sound frame that pymodbus refused
    (_rtu(b"\x01\x83\x02")[:-1] + b"\x00", 3, 2, True, BadReason.CRC),  # exception reply, bad CRC
    (bytes.fromhex("00010000000b010308") + b"\x00" * 4, 3, 4, False, BadReason.SHORT_FRAME),
]


@pytest.mark.parametrize(("rx", "fc", "count", "rtu", "reason"), CLASSIFY_TABLE)
def test_classify_no_reply(rx: bytes, fc: int, count: int, rtu: bool, reason: BadReason) -> None:
    assert classify_no_reply(rx, fc, count, rtu) is reason


@pytest.mark.parametrize(("fc", "count", "rtu", "n"), [(3, 2, True, 9), (3, 2, False, 13), (1, 9, True, 7),
                                                       (5, 1, True, 8), (6, 1, False, 12)])
def test_expected_reply_len(fc: int, count: int, rtu: bool, n: int) -> None:
    assert expected_reply_len(fc, count, rtu) == n


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(1)
    assert backoff_delay(0, 0.5, 10.0, rng) == 0.0
    for failures, (lo, hi) in {1: (0.25, 0.5), 2: (0.5, 1.0), 3: (1.0, 2.0), 10: (5.0, 10.0), 99: (5.0, 10.0)}.items():
        draws = [backoff_delay(failures, 0.5, 10.0, rng) for _ in range(20)]
        assert all(lo <= d <= hi for d in draws), (failures, draws)
        assert len(set(draws)) > 1  # jittered


@pytest.mark.parametrize(("baud", "parity", "stop", "gap"), [
    (9600, "E", 1, 3.5 * 11 / 9600), (9600, "N", 1, 3.5 * 10 / 9600), (19200, "N", 2, 3.5 * 11 / 19200),
    (115200, "E", 1, 0.00175),
])
def test_rtu_frame_gap(baud: int, parity: str, stop: int, gap: float) -> None:
    spec = DeviceSpec("d", "rtu", serial_port="/dev/null", baudrate=baud, parity=parity, stopbits=stop)  # type: ignore[arg-type]
    assert spec.frame_gap_s == pytest.approx(gap)
    assert DeviceSpec("d", "rtu", serial_port="/x", inter_frame_gap_s=0.01).frame_gap_s == 0.01
    assert DeviceSpec("d", "tcp", host="127.0.0.1").frame_gap_s == 0.0


@pytest.mark.parametrize("kwargs", [
    {"id": ""}, {"transport": "udp"}, {"host": ""}, {"port": 0}, {"unit_id": 248}, {"poll_s": 0},
    {"retries": -1}, {"points": (_p("a", 0), _p("a", 1))},
    {"transport": "rtu", "serial_port": ""}, {"transport": "rtu", "serial_port": "/x", "stopbits": 3},
])
def test_device_spec_rejects(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"id": "d", "transport": "tcp", "host": "127.0.0.1", "port": 502}
    base.update(kwargs)
    with pytest.raises(ConfigError) as err:
        DeviceSpec(**base)  # type: ignore[arg-type]
    assert "devices." in str(err.value)

"""Table tests of the pure MQTT codecs: topic filters, scalar payloads, waveforms, ESPresense."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mqtt_in import (
    AccelUnit,
    EspresenseCfg,
    EspSighting,
    MqttConfigError,
    PayloadKind,
    PayloadMapping,
    Rejection,
    RejectReason,
    Sample,
    WaveformFrame,
    WaveformMapping,
    check_filter,
    decode,
    decode_espresense,
    decode_sample,
    decode_waveform,
    derive_badge_id,
    rms_mapping,
    topic_matches,
)
from drivers.mqtt_in.codec import check_age, parse_timestamp

R = RejectReason

# -- topic matching ----------------------------------------------------------------------

TOPIC_TABLE = [
    # filter, topic, matches
    ("plant/gas/1", "plant/gas/1", True),
    ("plant/gas/1", "plant/gas/2", False),
    ("plant/gas/1", "plant/gas/1/x", False),
    ("plant/gas/1", "plant/gas", False),
    ("plant/+/1", "plant/gas/1", True),
    ("plant/+/1", "plant/gas/2", False),
    ("plant/+/1", "plant/gas/x/1", False),
    ("plant/+", "plant/", True),  # '+' matches an empty level
    ("plant/+", "plant", False),  # ... but a level must exist
    ("+/+", "/finance", True),
    ("+", "/finance", False),
    ("/+", "/finance", True),
    ("plant/#", "plant", True),  # '#' includes the parent level
    ("plant/#", "plant/gas", True),
    ("plant/#", "plant/gas/1/2/3", True),
    ("plant/#", "plants/gas", False),
    ("#", "anything/at/all", True),
    ("#", "/", True),
    ("#", "$SYS/broker/uptime", False),  # wildcards in level 1 never match $ topics
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/+/uptime", "$SYS/broker/uptime", True),
    ("plant/+/#", "plant/gas", True),
    ("plant/+/#", "plant", False),
    ("Plant/gas", "plant/gas", False),  # case-sensitive
    ("espresense/devices/+/+", "espresense/devices/iBeacon:x-1-2/kitchen", True),
    ("espresense/devices/+/+", "espresense/devices/iBeacon:x-1-2", False),
    ("espresense/devices/+/+", "espresense/devices/a/b/c", False),
]


@pytest.mark.parametrize(("flt", "topic", "expected"), TOPIC_TABLE)
def test_topic_matches(flt: str, topic: str, expected: bool) -> None:
    assert check_filter(flt) is None
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize("flt", ["", "plant/#/gas", "plant/ga#", "plant/gas+", "pl+nt/x", "a/b\x00"])
def test_invalid_filters_are_refused(flt: str) -> None:
    assert check_filter(flt) is not None
    with pytest.raises(MqttConfigError, match="topic"):
        PayloadMapping(topic=flt, signal="o2", unit="%vol")


# -- scalar payloads ------------------------------------------------------------------

O2 = PayloadMapping(topic="plant/gas/1", signal="o2", unit="%vol", unit_path="unit")
NESTED = PayloadMapping(topic="t", signal="s", unit="ppm", value_path="data.values.1")
WHOLE = PayloadMapping(topic="t", signal="s", unit="ppm", value_path="")
RAW = PayloadMapping(topic="t", signal="s", unit="ppm", kind=PayloadKind.RAW)
SMALL = PayloadMapping(topic="t", signal="s", unit="ppm", max_bytes=32)

DECODE_TABLE: list[tuple[PayloadMapping, bytes, float | RejectReason]] = [
    (O2, b'{"value": 20.9, "unit": "%vol"}', 20.9),
    (O2, b'{"value": 21}', 21.0),  # unit field absent: accepted
    (O2, b'{"value": -0.0, "unit": " %vol "}', 0.0),
    (O2, b'{"value": 20.9, "unit": "ppm"}', R.UNIT_MISMATCH),
    (O2, b'{"value": 20.9, "unit": "%VOL"}', R.UNIT_MISMATCH),  # exact: refusing is the safe side
    (O2, b'{"value": 20.9, "unit": 5}', R.WRONG_TYPE),
    (O2, b'{"value": true}', R.WRONG_TYPE),  # bool is not a number
    (O2, b'{"value": false}', R.WRONG_TYPE),
    (O2, b'{"value": "20.9"}', R.WRONG_TYPE),
    (O2, b'{"value": null}', R.WRONG_TYPE),
    (O2, b'{"value": [20.9]}', R.WRONG_TYPE),
    (O2, b'{"value": {"v": 1}}', R.WRONG_TYPE),
    (O2, b'{"value": NaN}', R.NOT_FINITE),
    (O2, b'{"value": Infinity}', R.NOT_FINITE),
    (O2, b'{"value": -Infinity}', R.NOT_FINITE),
    (O2, b'{"value": 1e999}', R.NOT_FINITE),
    (O2, b'{"value": ' + b"9" * 400 + b"}", R.NOT_FINITE),
    (O2, b'{"val": 20.9}', R.MISSING_FIELD),
    (O2, b"[20.9]", R.MISSING_FIELD),
    (O2, b"20.9", R.MISSING_FIELD),
    (O2, b'{"value": 20.9', R.BAD_JSON),
    (O2, b"", R.BAD_JSON),
    (O2, b"garbage", R.BAD_JSON),
    (O2, b"\xef\xbb\xbf{\"value\": 1}", R.BAD_JSON),  # a BOM is not JSON
    (O2, b"[" * 50_000 + b"]" * 50_000, R.OVERSIZE),
    (O2, b'{"value": 1, "x": "\xff"}', R.NOT_UTF8),
    (O2, b"\xc3\x28", R.NOT_UTF8),
    (O2, b'{"value": 1, "pad": "' + b"x" * 70_000 + b'"}', R.OVERSIZE),
    (SMALL, b'{"value": 1, "pad": "xxxxxxxxxxxxxxxxx"}', R.OVERSIZE),
    (SMALL, b'{"value": 1}', 1.0),
    (NESTED, b'{"data": {"values": [1.5, 2.5, 3.5]}}', 2.5),
    (NESTED, b'{"data": {"values": [1.5]}}', R.MISSING_FIELD),  # index past the end
    (NESTED, b'{"data": {"values": {"1": 7}}}', 7.0),  # a digit segment is a key in an object
    (NESTED, b'{"data": {"values": 3}}', R.MISSING_FIELD),  # cannot descend into a number
    (NESTED, b'{"data": [1, 2]}', R.MISSING_FIELD),  # "values" is not an index
    (WHOLE, b"12.5", 12.5),
    (WHOLE, b"NaN", R.NOT_FINITE),
    (WHOLE, b'"12.5"', R.WRONG_TYPE),
    (WHOLE, b"[" * 50 + b"]" * 50, R.WRONG_TYPE),
    (RAW, b"20.9", 20.9),
    (RAW, b" -3e2\n", -300.0),
    (RAW, b".5", 0.5),
    (RAW, b"nan", R.NOT_FINITE),
    (RAW, b"-Infinity", R.NOT_FINITE),
    (RAW, b"1e999", R.NOT_FINITE),
    (RAW, b"1_000", R.WRONG_TYPE),  # float() would take it
    (RAW, "\uff11\uff12".encode(), R.WRONG_TYPE),  # full-width digits: float() would take them
    (RAW, b"true", R.WRONG_TYPE),
    (RAW, b"", R.WRONG_TYPE),
    (RAW, b"\xff", R.NOT_UTF8),
    (rms_mapping("t", "vib"), b'{"rms_mm_s": 2.3}', 2.3),
    (rms_mapping("t", "vib"), b'{"rms_mm_s": "2.3"}', R.WRONG_TYPE),
]


@pytest.mark.parametrize(("mapping", "payload", "expected"), DECODE_TABLE)
def test_decode(mapping: PayloadMapping, payload: bytes, expected: float | RejectReason) -> None:
    got = decode(mapping, payload)
    if isinstance(expected, RejectReason):
        assert isinstance(got, Rejection), got
        assert got.reason is expected, got
    else:
        assert got == expected


def test_deep_nesting_is_bad_json_not_a_crash() -> None:
    # Under the size limit but deeper than Python's recursion limit.
    m = PayloadMapping(topic="t", signal="s", unit="u", max_bytes=1_000_000)
    got = decode(m, b"[" * 200_000 + b"]" * 200_000)
    assert isinstance(got, Rejection) and got.reason is R.BAD_JSON


TS = PayloadMapping(topic="t", signal="s", unit="ppm", ts_path="meta.ts")
EPOCH = 1_700_000_000.25


@pytest.mark.parametrize(
    ("ts_json", "expected"),
    [
        (json.dumps(EPOCH), EPOCH),
        (json.dumps(int(EPOCH * 1000)), 1_700_000_000.25),
        (json.dumps(datetime.fromtimestamp(EPOCH, UTC).isoformat()), EPOCH),
        ('"2023-11-14T22:13:20.25Z"', EPOCH),
        ('"2023-11-15T06:13:20.25+08:00"', EPOCH),
        ('"2023-11-14T22:13:20"', R.BAD_TIMESTAMP),  # naive: whose local time?
        ('"yesterday"', R.BAD_TIMESTAMP),
        ("true", R.BAD_TIMESTAMP),
        ("-5", R.BAD_TIMESTAMP),
        ("NaN", R.BAD_TIMESTAMP),
        ('"99999-01-01T00:00:00Z"', R.BAD_TIMESTAMP),
    ],
)
def test_timestamps(ts_json: str, expected: float | RejectReason) -> None:
    got = decode_sample(TS, f'{{"value": 3, "meta": {{"ts": {ts_json}}}}}'.encode())
    if isinstance(expected, RejectReason):
        assert isinstance(got, Rejection) and got.reason is expected, got
    else:
        assert isinstance(got, Sample) and got.value == 3.0
        assert got.ts == pytest.approx(expected, abs=1e-3)


def test_missing_timestamp_is_refused_when_configured() -> None:
    got = decode_sample(TS, b'{"value": 3}')
    assert got == Rejection(R.MISSING_FIELD, "meta.ts")


@pytest.mark.parametrize(
    ("ts", "now", "expected"),
    [(100.0, 101.5, 1.5), (100.0, 100.0, 0.0), (100.0, 99.0, 0.0), (100.0, 111.0, R.STALE), (100.0, 89.0, R.FUTURE)],
)
def test_check_age(ts: float, now: float, expected: float | RejectReason) -> None:
    got = check_age(ts, now, max_age_s=10.0)
    if isinstance(expected, RejectReason):
        assert isinstance(got, Rejection) and got.reason is expected
    else:
        assert got == expected


def test_parse_timestamp_ms_threshold() -> None:
    assert parse_timestamp(1e10) == 1e10  # year 2286 in seconds, still seconds
    assert parse_timestamp(2e11) == 2e8  # milliseconds


@pytest.mark.parametrize(
    ("kwargs", "place"),
    [
        ({"signal": ""}, "signal"),
        ({"kind": PayloadKind.RAW, "unit_path": "unit"}, "raw"),
        ({"value_path": "a..b"}, "value_path"),
        ({"qos": 3}, "qos"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_age_s": 0.0}, "max_age_s"),
    ],
)
def test_mapping_validation(kwargs: dict[str, object], place: str) -> None:
    base: dict[str, object] = {"topic": "t", "signal": "s", "unit": "u"}
    with pytest.raises(MqttConfigError, match=place):
        PayloadMapping(**{**base, **kwargs})  # type: ignore[arg-type]


# -- waveforms ------------------------------------------------------------------------

WF = WaveformMapping(topic="vib/+/wave", signal="pump-1.vib")


def _frame(samples: object, rate: object = 8192, unit: object = "m/s2") -> bytes:
    return json.dumps({"sample_rate_hz": rate, "unit": unit, "samples": samples}).encode()


def test_waveform_decodes_to_a_read_only_array() -> None:
    x = np.sin(np.arange(8192) * 2 * np.pi * 50 / 8192)
    frame = decode_waveform(WF, _frame(x.tolist()), at=12.5)
    assert not isinstance(frame, Rejection)
    assert (frame.signal, frame.sample_rate_hz, frame.unit, frame.at) == ("pump-1.vib", 8192.0, AccelUnit.MS2, 12.5)
    assert frame.samples.dtype == np.float64 and frame.samples.shape == (8192,)
    np.testing.assert_array_equal(frame.samples, x)
    assert frame.duration_s == 1.0
    with pytest.raises(ValueError, match="read-only"):
        frame.samples[0] = 1.0


def test_waveform_in_g_converts() -> None:
    frame = decode_waveform(WF, _frame([1.0] * 256, unit="g"), at=0.0)
    assert not isinstance(frame, Rejection)
    assert frame.unit is AccelUnit.G
    assert frame.in_ms2()[0] == pytest.approx(9.80665)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_frame([0.0] * 255), R.BAD_FRAME),
        (_frame([0.0] * 65537), R.BAD_FRAME),
        (_frame([0.0] * 256, rate=0), R.BAD_FRAME),
        (_frame([0.0] * 256, rate=-8192), R.BAD_FRAME),
        (_frame([0.0] * 256, rate="8192"), R.WRONG_TYPE),
        (_frame([0.0] * 256, rate=True), R.WRONG_TYPE),
        (_frame([0.0] * 256, unit="mm/s"), R.UNIT_MISMATCH),
        (_frame([0.0] * 256, unit=None), R.WRONG_TYPE),
        (_frame([0.0] * 255 + [True]), R.WRONG_TYPE),
        (_frame([0.0] * 255 + ["1.0"]), R.WRONG_TYPE),
        (_frame([0.0] * 255 + [None]), R.WRONG_TYPE),
        (_frame("0,0,0"), R.WRONG_TYPE),
        (_frame([0.0] * 100 + [math.nan] + [0.0] * 155), R.NOT_FINITE),
        (_frame([0.0] * 255 + [math.inf]), R.NOT_FINITE),
        (b'{"sample_rate_hz": 8192, "unit": "g", "samples": [' + b"0," * 255 + b"1" + b"0" * 400 + b"]}",
         R.NOT_FINITE),
        (b'{"unit": "g", "samples": []}', R.MISSING_FIELD),
        (b'{"sample_rate_hz": 1, "unit": "g"}', R.MISSING_FIELD),
        (b"[1, 2, 3]", R.MISSING_FIELD),
        (b"\xff", R.NOT_UTF8),
        (b"{", R.BAD_JSON),
    ],
)
def test_waveform_rejections(payload: bytes, reason: RejectReason) -> None:
    got = decode_waveform(WF, payload, at=0.0)
    assert isinstance(got, Rejection) and got.reason is reason, got


def test_waveform_oversize() -> None:
    small = WaveformMapping(topic="t", signal="s", max_bytes=1000)
    got = decode_waveform(small, _frame([0.0] * 256), at=0.0)
    assert isinstance(got, Rejection) and got.reason is R.OVERSIZE


# -- ESPresense -----------------------------------------------------------------------

IB = "iBeacon:E5CA1ADE-F007-BA11-0000-000000000000-1-2"
ESP = EspresenseCfg(
    rooms={"boiler_room": "rx-boiler"},
    badges={"irk:00112233445566778899aabbccddeeff": "badge-17"},
)


@pytest.mark.parametrize(
    ("device_id", "badge"),
    [
        (IB, "ibeacon:e5ca1ade-f007-ba11-0000-000000000000:1:2"),
        (IB.lower().replace("-1-2", "-00100-65535"), "ibeacon:e5ca1ade-f007-ba11-0000-000000000000:100:65535"),
        (IB.replace("-1-2", "-1-65536"), IB.replace("-1-2", "-1-65536")),  # minor out of range: verbatim
        ("eddy:00112233445566778899-AABBCCDDEEFF", "eddystone:00112233445566778899:aabbccddeeff"),
        ("eddy:0011223344556677889900-aabbccddeeff", "eddy:0011223344556677889900-aabbccddeeff"),  # not 10 bytes
        ("irk:abc", "irk:abc"),
        ("iBeacon:not-a-uuid-1-2", "iBeacon:not-a-uuid-1-2"),
        ("c2aabbccddee", "c2aabbccddee"),
    ],
)
def test_derive_badge_id(device_id: str, badge: str) -> None:
    assert derive_badge_id(device_id) == badge


def _esp(rssi: object = -71, **extra: object) -> bytes:
    return json.dumps({"id": "x", "rssi": rssi, "distance": 2.3, **extra}).encode()


ESP_TABLE: list[tuple[EspresenseCfg, str, bytes, EspSighting | RejectReason]] = [
    (ESP, f"espresense/devices/{IB}/boiler_room", _esp(),
     EspSighting(IB, "boiler_room", "ibeacon:e5ca1ade-f007-ba11-0000-000000000000:1:2", "rx-boiler", -71.0, 2.3)),
    (ESP, "espresense/devices/irk:00112233445566778899aabbccddeeff/kitchen", _esp(-80.5, distance="far"),
     EspSighting("irk:00112233445566778899aabbccddeeff", "kitchen", "badge-17", "kitchen", -80.5, None)),
    (EspresenseCfg(passthrough_badges=False), f"espresense/devices/{IB}/r", _esp(), R.UNKNOWN_DEVICE),
    (EspresenseCfg(passthrough_rooms=False), f"espresense/devices/{IB}/r", _esp(), R.UNKNOWN_ROOM),
    (ESP, f"espresense/devices/{IB}/r", _esp(True), R.WRONG_TYPE),
    (ESP, f"espresense/devices/{IB}/r", _esp("-70"), R.WRONG_TYPE),
    (ESP, f"espresense/devices/{IB}/r", _esp(math.nan), R.NOT_FINITE),
    (ESP, f"espresense/devices/{IB}/r", _esp(-200), R.OUT_OF_RANGE),
    (ESP, f"espresense/devices/{IB}/r", _esp(30), R.OUT_OF_RANGE),
    (ESP, f"espresense/devices/{IB}/r", b'{"distance": 1}', R.MISSING_FIELD),
    (ESP, f"espresense/devices/{IB}/r", b"[-70]", R.WRONG_TYPE),
    (ESP, f"espresense/devices/{IB}/r", b"{", R.BAD_JSON),
    (ESP, f"espresense/devices/{IB}/r", b'{"rssi": -70, "pad": "' + b"x" * 5000 + b'"}', R.OVERSIZE),
    (ESP, f"espresense/devices/{IB}", _esp(), R.BAD_TOPIC),
    (ESP, f"espresense/devices/{IB}/r/x", _esp(), R.BAD_TOPIC),
    (ESP, f"espresense/devices/{IB}/", _esp(), R.BAD_TOPIC),
    (ESP, f"other/devices/{IB}/r", _esp(), R.BAD_TOPIC),
    (EspresenseCfg(prefix="site/a/esp"), "site/a/esp/devices/d1/r1", _esp(-60),
     EspSighting("d1", "r1", "d1", "r1", -60.0, 2.3)),
]


@pytest.mark.parametrize(("cfg", "topic", "payload", "expected"), ESP_TABLE)
def test_decode_espresense(
    cfg: EspresenseCfg, topic: str, payload: bytes, expected: EspSighting | RejectReason
) -> None:
    got = decode_espresense(cfg, topic, payload)
    if isinstance(expected, RejectReason):
        assert isinstance(got, Rejection) and got.reason is expected, got
    else:
        assert got == expected
        assert topic_matches(cfg.topic_filter, topic)


@pytest.mark.parametrize("prefix", ["", "esp/#", "a/+/b", "/esp", "esp/", "a//b"])
def test_espresense_prefix_validation(prefix: str) -> None:
    with pytest.raises(MqttConfigError, match="prefix"):
        EspresenseCfg(prefix=prefix)


def test_espresense_cfg_copies_its_maps() -> None:
    rooms = {"a": "rx-a"}
    cfg = EspresenseCfg(rooms=rooms)
    rooms["a"] = "rx-b"
    assert cfg.rooms["a"] == "rx-a"


# -- no input makes a decoder raise ------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
structured = st.fixed_dictionaries(
    {},
    optional={"value": json_values, "unit": json_values, "ts": json_values, "rssi": json_values,
              "sample_rate_hz": json_values, "samples": json_values, "data": json_values},
).map(lambda d: json.dumps(d).encode())
any_payload = st.binary(max_size=512) | structured
MAPPINGS = [O2, NESTED, WHOLE, RAW, SMALL, TS, rms_mapping("t", "v")]


@settings(max_examples=400, deadline=None)
@given(payload=any_payload)
def test_no_payload_makes_a_decoder_raise(payload: bytes) -> None:
    for m in MAPPINGS:
        got = decode_sample(m, payload)
        assert isinstance(got, Rejection | Sample)
        if isinstance(got, Sample):
            assert math.isfinite(got.value)
    got_wf = decode_waveform(WaveformMapping(topic="t", signal="s", min_samples=1), payload, 0.0)
    assert isinstance(got_wf, Rejection | WaveformFrame)
    got_esp = decode_espresense(ESP, f"espresense/devices/{IB}/r", payload)
    assert isinstance(got_esp, Rejection | EspSighting)


def _oracle(flt: str, topic: str) -> bool:
    """A second, regex-based reading of the MQTT matching rules."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    parts = flt.split("/")
    multi = parts[-1] == "#"
    if multi:
        parts = parts[:-1]
    rx = "/".join("[^/]*" if p == "+" else re.escape(p) for p in parts)
    if multi:
        rx = rx + "(/.*)?" if parts else ".*"
    return re.fullmatch(rx, topic, flags=re.DOTALL) is not None


@settings(max_examples=500, deadline=None)
@given(flt=st.text(alphabet="ab/+#$", min_size=1, max_size=8), topic=st.text(alphabet="ab/$", min_size=1, max_size=8))
def test_topic_matching_agrees_with_a_regex_oracle(flt: str, topic: str) -> None:
    if check_filter(flt) is None:
        assert topic_matches(flt, topic) is _oracle(flt, topic)

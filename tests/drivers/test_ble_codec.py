"""Tables of bytes in, badge ids (or rejections) out: iBeacon, Eddystone-UID, registry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.codec import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    BadgeRegistry,
    BeaconId,
    BeaconKind,
    Rejection,
    RejectReason,
    canonical_badge_id,
    decode_advertisement,
    decode_eddystone,
    decode_ibeacon,
)
from drivers.ble.errors import BadgeConfigError

UUID_BYTES = bytes.fromhex("fda50693a4e24fb1afcfc6eb07647825")
UUID_TEXT = "fda50693-a4e2-4fb1-afcf-c6eb07647825"
IBEACON = bytes([0x02, 0x15]) + UUID_BYTES + bytes([0x01, 0x02, 0xFF, 0xFE, 0xC5])
NS = bytes.fromhex("00112233445566778899")
INST = bytes.fromhex("aabbccddeeff")
EDDY_UID = bytes([0x00, 0xEC]) + NS + INST + b"\x00\x00"
IB = BeaconKind.IBEACON
ED = BeaconKind.EDDYSTONE


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(IBEACON, BeaconId(IB, f"ibeacon:{UUID_TEXT}:258:65534", -59), id="valid"),
        pytest.param(
            bytes([0x02, 0x15]) + bytes(16) + bytes([0, 0, 0, 0, 0x7F]),
            BeaconId(IB, "ibeacon:00000000-0000-0000-0000-000000000000:0:0", 127),
            id="zero-uuid-max-power",
        ),
        pytest.param(b"", None, id="empty-not-a-beacon"),
        pytest.param(bytes([0x10, 0x05, 1, 2, 3, 4, 5]), None, id="apple-nearby-not-a-beacon"),
        pytest.param(bytes([0x02]), Rejection(IB, RejectReason.TRUNCATED, "1 byte, header needs 2"), id="header-cut"),
        pytest.param(
            bytes([0x02, 0x14]) + bytes(21),
            Rejection(IB, RejectReason.BAD_LENGTH, "length byte 0x14, expected 0x15"),
            id="bad-length-byte",
        ),
        pytest.param(IBEACON[:-1], Rejection(IB, RejectReason.TRUNCATED, "22 bytes, expected 23"), id="no-power"),
        pytest.param(IBEACON[:10], Rejection(IB, RejectReason.TRUNCATED, "10 bytes, expected 23"), id="uuid-cut"),
        pytest.param(
            IBEACON + b"\x00", Rejection(IB, RejectReason.TRAILING_BYTES, "24 bytes, expected 23"), id="trailing"
        ),
    ],
)
def test_ibeacon_table(data: bytes, expected: BeaconId | Rejection | None) -> None:
    assert decode_ibeacon(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(EDDY_UID, BeaconId(ED, f"eddystone:{NS.hex()}:{INST.hex()}", -20), id="uid-20"),
        pytest.param(EDDY_UID[:18], BeaconId(ED, f"eddystone:{NS.hex()}:{INST.hex()}", -20), id="uid-18-no-rfu"),
        pytest.param(
            bytes([0x05, 0x00]) + NS + INST, BeaconId(ED, f"eddystone:{NS.hex()}:{INST.hex()}", 0), id="low-nibble"
        ),
        pytest.param(bytes([0x10, 0xEB, 0x03]) + b"example", None, id="url-ignored"),
        pytest.param(bytes([0x20, 0x00]) + bytes(12), None, id="tlm-ignored"),
        pytest.param(bytes([0x30, 0x00]) + bytes(8), None, id="eid-ignored"),
        pytest.param(b"", Rejection(ED, RejectReason.TRUNCATED, "empty service data"), id="empty"),
        pytest.param(
            EDDY_UID[:17], Rejection(ED, RejectReason.TRUNCATED, "UID frame of 17 bytes, expected 18 or 20"), id="cut"
        ),
        pytest.param(
            EDDY_UID[:2], Rejection(ED, RejectReason.TRUNCATED, "UID frame of 2 bytes, expected 18 or 20"), id="hdr"
        ),
        pytest.param(
            EDDY_UID[:19], Rejection(ED, RejectReason.BAD_LENGTH, "UID frame of 19 bytes, expected 18 or 20"), id="19"
        ),
        pytest.param(
            EDDY_UID + b"\x01",
            Rejection(ED, RejectReason.TRAILING_BYTES, "UID frame of 21 bytes, expected 18 or 20"),
            id="trailing",
        ),
        pytest.param(
            bytes([0x90]) + bytes(19), Rejection(ED, RejectReason.UNKNOWN_FRAME, "frame byte 0x90"), id="unknown"
        ),
    ],
)
def test_eddystone_table(data: bytes, expected: BeaconId | Rejection | None) -> None:
    assert decode_eddystone(data) == expected


def test_advertisement_with_both_formats_and_noise() -> None:
    got = decode_advertisement(
        {APPLE_COMPANY_ID: IBEACON, 0x0059: b"\x01\x02"},  # Nordic data is not ours: ignored
        {"FEAA": EDDY_UID, "0000180f-0000-1000-8000-00805f9b34fb": b"\x64"},  # short form normalised
    )
    assert got == (
        BeaconId(IB, f"ibeacon:{UUID_TEXT}:258:65534", -59),
        BeaconId(ED, f"eddystone:{NS.hex()}:{INST.hex()}", -20),
    )


def test_advertisement_without_beacons_is_empty() -> None:
    assert decode_advertisement({0x0006: b"\x01\x09\x20"}, {EDDYSTONE_SERVICE_UUID: bytes([0x20]) + bytes(13)}) == ()


@given(
    manufacturer=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4),
    apple=st.binary(max_size=40),
    eddy=st.binary(max_size=40),
)
def test_decoder_never_raises_and_ids_are_canonical(manufacturer: dict[int, bytes], apple: bytes, eddy: bytes) -> None:
    manufacturer[APPLE_COMPANY_ID] = apple
    for d in decode_advertisement(manufacturer, {EDDYSTONE_SERVICE_UUID: eddy}):
        assert isinstance(d, BeaconId | Rejection)
        if isinstance(d, BeaconId):
            assert canonical_badge_id(d.id) == d.id
            assert -128 <= d.tx_power <= 127


@given(uuid_bytes=st.binary(min_size=16, max_size=16), major=st.integers(0, 0xFFFF), minor=st.integers(0, 0xFFFF))
def test_ibeacon_round_trip(uuid_bytes: bytes, major: int, minor: int) -> None:
    frame = bytes([0x02, 0x15]) + uuid_bytes + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + b"\xc5"
    d = decode_ibeacon(frame)
    assert isinstance(d, BeaconId)
    kind, u, ma, mi = d.id.split(":")
    assert (kind, bytes.fromhex(u.replace("-", "")), int(ma), int(mi)) == ("ibeacon", uuid_bytes, major, minor)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"ibeacon:{UUID_TEXT.upper()}:1:2", f"ibeacon:{UUID_TEXT}:1:2"),
        (f"ibeacon:{UUID_TEXT.replace('-', '')}:65535:0", f"ibeacon:{UUID_TEXT}:65535:0"),
        (f"  eddystone:{NS.hex().upper()}:{INST.hex()}  ", f"eddystone:{NS.hex()}:{INST.hex()}"),
    ],
)
def test_canonical_badge_id(text: str, expected: str) -> None:
    assert canonical_badge_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        f"ibeacon:{UUID_TEXT}:65536:0",
        f"ibeacon:{UUID_TEXT}:1",
        "ibeacon:not-a-uuid:1:2",
        f"eddystone:{NS.hex()}:{INST.hex()}00",
        "altbeacon:1234",
        "",
    ],
)
def test_canonical_badge_id_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"badge id|must be 0\.\.65535"):
        canonical_badge_id(text)


def test_registry_maps_known_and_reports_unknown() -> None:
    reg = BadgeRegistry.from_config(
        {f"ibeacon:{UUID_TEXT.upper()}:1:2": "p-17", f"eddystone:{NS.hex()}:{INST.hex()}": "p-17"}
    )
    assert reg.person_of(f"ibeacon:{UUID_TEXT}:1:2") == "p-17"
    assert reg.is_known(f"eddystone:{NS.hex()}:{INST.hex()}")
    assert reg.person_of(f"ibeacon:{UUID_TEXT}:9:9") is None
    assert not reg.is_known(f"ibeacon:{UUID_TEXT}:9:9")
    assert reg.badges_of("p-17") == {f"ibeacon:{UUID_TEXT}:1:2", f"eddystone:{NS.hex()}:{INST.hex()}"}
    with pytest.raises(TypeError):
        reg.people[f"ibeacon:{UUID_TEXT}:9:9"] = "intruder"  # type: ignore[index]


@pytest.mark.parametrize(
    ("badges", "message"),
    [
        ({"bogus": "p-1"}, r"ble\.badges\.bogus: 'bogus' is not a badge id"),
        ({f"ibeacon:{UUID_TEXT}:1:2": ""}, r"ble\.badges\.ibeacon:.*: person id must not be empty"),
        (
            [(f"ibeacon:{UUID_TEXT}:1:2", "p-1"), (f"ibeacon:{UUID_TEXT.upper()}:1:2", "p-2")],
            r"badge listed twice",
        ),
    ],
)
def test_registry_config_errors_name_the_place(badges: dict[str, str] | list[tuple[str, str]], message: str) -> None:
    with pytest.raises(BadgeConfigError, match=message):
        BadgeRegistry.from_config(badges, where="ble.badges")

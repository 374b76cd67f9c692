"""BLE badges: a pure codec (iBeacon, Eddystone-UID), the badge registry, and a bleak source."""

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
    eddystone_id,
    ibeacon_id,
)
from drivers.ble.errors import BadgeConfigError, BleError, ReceiverDown, ReceiverDownReason
from drivers.ble.source import BleSource

__all__ = [
    "APPLE_COMPANY_ID",
    "EDDYSTONE_SERVICE_UUID",
    "BadgeConfigError",
    "BadgeRegistry",
    "BeaconId",
    "BeaconKind",
    "BleError",
    "BleSource",
    "ReceiverDown",
    "ReceiverDownReason",
    "RejectReason",
    "Rejection",
    "canonical_badge_id",
    "decode_advertisement",
    "decode_eddystone",
    "decode_ibeacon",
    "eddystone_id",
    "ibeacon_id",
]

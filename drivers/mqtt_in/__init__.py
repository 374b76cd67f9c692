"""MQTT input driver: sensor payloads, vibration waveforms and ESPresense BLE sightings.

`codec`, `waveform` and `espresense` are pure decoders (bytes in, values or `Rejection`
out, never an exception); `source.MqttInput` does the I/O (over `wire`, a small MQTT 3.1.1 subscriber) and emits
`rules.events` (`Reading`, `Sighting`, `Rejected`, `DeviceStatus`).
"""

from .codec import (
    PayloadKind,
    PayloadMapping,
    Rejection,
    RejectReason,
    Sample,
    check_filter,
    decode,
    decode_sample,
    rms_mapping,
    topic_matches,
)
from .errors import MqttConfigError, MqttInputError
from .espresense import EspresenseCfg, EspSighting, badge_id, decode_espresense, derive_badge_id, receiver_id
from .source import Backoff, MqttInput, TlsOptions, parse_url
from .waveform import AccelUnit, WaveformFrame, WaveformMapping, decode_waveform

__all__ = [
    "AccelUnit",
    "Backoff",
    "EspSighting",
    "EspresenseCfg",
    "MqttConfigError",
    "MqttInput",
    "MqttInputError",
    "PayloadKind",
    "PayloadMapping",
    "RejectReason",
    "Rejection",
    "Sample",
    "TlsOptions",
    "WaveformFrame",
    "WaveformMapping",
    "badge_id",
    "check_filter",
    "decode",
    "decode_espresense",
    "decode_sample",
    "decode_waveform",
    "derive_badge_id",
    "parse_url",
    "receiver_id",
    "rms_mapping",
    "topic_matches",
]

"""Face-ID terminals: signed events over HTTP or MQTT, authenticated and replay-checked.

Pure part: `codec` (wire format, `FaceVerifier`). I/O: `source` (HTTP endpoint, MQTT
subscriber, the shared `FaceGate`), `keys` (key files, persisted replay state).
"""

from drivers.face.codec import (
    ALGS,
    VERIFY_MODES,
    Alg,
    FaceVerifier,
    Rejection,
    RejectReason,
    TerminalCfg,
    VerifierCfg,
    canonical_bytes,
    decode_last_seq,
    encode_last_seq,
    format_utc,
)
from drivers.face.errors import FaceError, FaceLinkError, KeyFileError, SeqStateError
from drivers.face.keys import SeqStore, load_terminal_key
from drivers.face.source import (
    HTTP_STATUS,
    BrokerUrl,
    Clock,
    Emit,
    FaceEvent,
    FaceGate,
    FaceHttpServer,
    FaceMqttSource,
    SystemClock,
    face_routes,
)

__all__ = [
    "ALGS",
    "HTTP_STATUS",
    "VERIFY_MODES",
    "Alg",
    "BrokerUrl",
    "Clock",
    "Emit",
    "FaceError",
    "FaceEvent",
    "FaceGate",
    "FaceHttpServer",
    "FaceLinkError",
    "FaceMqttSource",
    "FaceVerifier",
    "KeyFileError",
    "RejectReason",
    "Rejection",
    "SeqStateError",
    "SeqStore",
    "SystemClock",
    "TerminalCfg",
    "VerifierCfg",
    "canonical_bytes",
    "decode_last_seq",
    "encode_last_seq",
    "face_routes",
    "format_utc",
    "load_terminal_key",
]

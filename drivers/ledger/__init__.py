"""The central ledger, as seen from the gateway: signed permits in (verified here)."""

from drivers.ledger.errors import LedgerError, LedgerKeyError, PermitFormatError
from drivers.ledger.keys import load_ledger_public_key
from drivers.ledger.permit_codec import (
    CANON,
    MAX_PERMIT_BYTES,
    MAX_SAFE_INTEGER,
    PermitRejection,
    RejectReason,
    canonical_json,
    jcs,
    loads_strict,
    permit_from_body,
    permit_to_body,
    sign_permit,
    signing_bytes,
    verify_permit,
)

__all__ = [
    "CANON",
    "MAX_PERMIT_BYTES",
    "MAX_SAFE_INTEGER",
    "LedgerError",
    "LedgerKeyError",
    "PermitFormatError",
    "PermitRejection",
    "RejectReason",
    "canonical_json",
    "jcs",
    "load_ledger_public_key",
    "loads_strict",
    "permit_from_body",
    "permit_to_body",
    "sign_permit",
    "signing_bytes",
    "verify_permit",
]

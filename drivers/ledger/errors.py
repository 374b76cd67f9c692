"""Errors of the ledger driver: small classes that carry fields and name the fix."""

from __future__ import annotations

from pathlib import Path


class LedgerError(Exception):
    """Base of the ledger driver's errors."""


class LedgerKeyError(LedgerError):
    """The ledger public key file cannot be used. Raised at start-up, never per permit."""

    def __init__(self, path: str | Path, reason: str, fix: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"ledger public key {self.path}: {reason}; fix: {fix}")


class PermitFormatError(LedgerError, ValueError):
    """A permit body does not match the expected shape. `field` is a dotted path."""

    def __init__(self, field: str, why: str) -> None:
        self.field = field
        self.why = why
        super().__init__(f"permit field {field}: {why}")

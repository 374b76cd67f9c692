"""Value types and errors of the outbox (split from gateway/ledger/outbox.py to keep it readable)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OutboxError(Exception):
    """The outbox could not do `op` on its database (disk full, I/O error, locked, closed).

    A failed put rolls back whole; nothing accepted before is lost. Raise an alarm, keep safety going.
    """

    def __init__(self, path: str, op: str, reason: str) -> None:
        self.path = path
        """The outbox database file."""
        self.op = op
        """What was being done: open, put, send, list ..."""
        self.reason = reason
        """The underlying error, as text."""
        super().__init__(f"outbox {path}: {op} failed: {reason}")


class OutboxFull(OutboxError):
    """The outbox holds `limit` undelivered records: a loud fault, never a silent drop.

    Fix: restore the link to the ledger (the backlog then drains), or raise max_records.
    """

    def __init__(self, path: str, limit: int, undelivered: int, wanted: int) -> None:
        self.limit = limit
        """max_records of the outbox."""
        self.undelivered = undelivered
        """Pending plus parked records at the time of the put."""
        self.wanted = wanted
        """How many records the refused call tried to add."""
        super().__init__(
            path,
            "put",
            f"full: {undelivered} undelivered of {limit} allowed, {wanted} more refused; "
            "restore the ledger link or raise max_records",
        )


class SendKind(StrEnum):
    OK = "ok"
    """The ledger holds the record (created now or earlier: a duplicate is success)."""
    RETRY = "retry"
    """Transient (5xx, timeout, connection error, 429): the record stays at the stream's head."""
    PARK = "park"
    """Rejected for good (4xx): set aside with the reason; the stream moves on."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one delivery attempt came to; built by the ledger client at its boundary."""

    kind: SendKind
    status: int | None = None
    """HTTP status, when there was a response."""
    reason: str = ""
    """Why it must be retried or parked, for logs and the parked list."""
    retry_after_s: float | None = None
    """The server's Retry-After, honoured as the least backoff."""

    @classmethod
    def ok(cls, status: int | None = None) -> SendResult:
        return cls(SendKind.OK, status)

    @classmethod
    def retry(cls, reason: str, status: int | None = None, retry_after_s: float | None = None) -> SendResult:
        return cls(SendKind.RETRY, status, reason, retry_after_s)

    @classmethod
    def park(cls, status: int | None, reason: str) -> SendResult:
        return cls(SendKind.PARK, status, reason)


Send = Callable[[str, str, Mapping[str, Any]], Awaitable[SendResult]]
"""send(stream, key, body) -> SendResult; e.g. `LedgerClient.send`."""


class State(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One row of the outbox, as `list()` returns it."""

    id: int
    """Row id; delivery order within a stream. Pass it to `retry()`."""
    stream: str
    key: str
    """uuid, also the body's "id" and the ledger's Idempotency-Key."""
    seq: int
    """Per-stream sequence number, also the body's "seq"."""
    body: Mapping[str, Any]
    created_utc: str
    attempts: int
    state: State
    park_reason: str | None
    last_error: str | None
    sent_utc: str | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counters for the status page and tests."""

    pending: int
    parked: int
    sent_kept: int
    """Sent records still kept as a tail (see keep_sent)."""
    transactions: int
    """Put transactions committed since open: fewer than puts means group commit worked."""
    puts: int
    """Records added since open."""
    blocked_streams: tuple[str, ...]
    """Streams whose head is failing and backing off right now."""

"""Append-only, hash-chained audit log (JSON lines) and its verifier.

Each line is the canonical JSON (sorted keys, no spaces, UTF-8; see
`drivers.ledger.canonical_json`) of

    {"seq": n, "utc": "2024-05-01T08:00:00.000000Z", "prev": <hash of line n-1 or 64 zeros>,
     "record": {...}, "hash": sha256hex(canonical_json({"seq", "utc", "prev", "record"}))}

followed by "\\n". "prev" is the previous line's "hash", i.e. the SHA-256 of the previous
line's canonical bytes without its own "hash" field. `seq` starts at 0 and grows by one.
The verifier also requires every line to be byte-for-byte canonical, so any edit shows,
even one that leaves the JSON meaning alone.

Records are JSON objects with a string "kind". A replayable decision is recorded as
`{"kind": "decision", "inputs": [<event as JSON>, ...], "decision": {...}}`; permit
transitions, acknowledgements and trips use their own kinds. `iter_entries` reads them
back, verifying as it goes.

Durability: every append writes the whole line with one `os.write` on an O_APPEND fd
(no user-space buffer to flush) and, by default, `fsync`s it before returning
(`fsync_every=1`). The log records state changes and decisions, not polls, so it sees a
few lines per second at most, and an fsync costs milliseconds even on eMMC; a record
that vanishes in a power cut is precisely the evidence this log exists to keep.
`fsync_every=N` batches for bulk use (call `sync()` at quiet moments); a power cut then
loses at most N-1 lines, and a torn last line is repaired on reopen (below).

Reopen: the chain head is restored from the last line. Bytes after the last newline are
a torn write (power cut mid-line): they are truncated, logged (`audit_torn_tail_truncated`)
and an `{"kind": "audit_recovery", ...}` record is appended so the loss is itself in the
chain. A last complete line that is not a valid entry is not repaired: `AuditCorruptError`.

Limits: a hash chain shows edits, insertions, reorderings and deletions in the middle;
deleting lines at the END (or rewriting the whole file) leaves a valid shorter chain.
Publish `AuditLog.head` northbound (ledger outbox) from time to time and pass it to
`verify(path, anchor=...)` to catch that.

The blocking calls (`append`, `sync`) are thread-safe: the daemon calls them through
`asyncio.to_thread` or from a single writer task.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import structlog

from drivers.ledger.permit_codec import canonical_json, loads_strict

log = structlog.get_logger(__name__)

GENESIS = "0" * 64
"""The "prev" of the first line."""
MAX_LINE_BYTES = 1024 * 1024
"""One record stays below 1 MiB so that the reader's memory is bounded."""
_KEYS = frozenset({"seq", "utc", "prev", "record", "hash"})


# --- errors ----------------------------------------------------------------------------


class AuditError(Exception):
    """Base of the audit log's errors; `path` names the file."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"audit log {self.path}: {message}")


class AuditOpenError(AuditError):
    """The file cannot be opened for appending."""


class AuditLockedError(AuditError):
    """Another process (or another AuditLog) already appends to this file."""


class AuditCorruptError(AuditError):
    """The last complete line is not a valid entry: the chain cannot be continued safely."""


class AuditRecordError(AuditError, ValueError):
    """The record is not a JSON object with a "kind", or is too large. Nothing was written."""


class AuditWriteError(AuditError):
    """Writing or syncing failed (disk full, I/O error). The partial line was removed if possible."""


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """The end of the chain: publish it northbound as an anchor."""

    seq: int
    """seq of the last line; -1 for an empty log."""
    hash: str
    """hash of the last line; GENESIS for an empty log."""


EMPTY_HEAD = Head(-1, GENESIS)


@dataclass(frozen=True, slots=True)
class Entry:
    """One verified line."""

    seq: int
    utc: str
    prev: str
    record: Mapping[str, Any]
    hash: str


class VerifyReason(StrEnum):
    OK = "ok"
    UNREADABLE = "unreadable"
    NOT_JSON = "not_json"
    BAD_FIELDS = "bad_fields"
    NOT_CANONICAL = "not_canonical"
    BAD_SEQ = "bad_seq"
    BAD_PREV = "bad_prev"
    BAD_HASH = "bad_hash"
    TORN_LINE = "torn_line"
    LINE_TOO_LONG = "line_too_long"
    TRUNCATED = "truncated"
    """The file ends before the anchor's seq."""
    ANCHOR_MISMATCH = "anchor_mismatch"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    count: int
    """Number of good lines before the first bad one (all of them when ok)."""
    first_bad_line: int | None
    """1-based line number of the first bad line; None when ok or unreadable."""
    reason: VerifyReason
    detail: str = ""
    head: Head = EMPTY_HEAD
    """Head of the good prefix."""


def entry_hash(seq: int, utc: str, prev: str, record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a line without its "hash" field."""
    return hashlib.sha256(canonical_json({"seq": seq, "utc": utc, "prev": prev, "record": record})).hexdigest()


def _utc_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- reading and checking ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bad:
    reason: VerifyReason
    detail: str


def _check_line(raw: bytes, expect_seq: int, expect_prev: str) -> Entry | _Bad:
    """Check one newline-terminated line against the chain so far."""
    body = raw[:-1]
    try:
        obj = loads_strict(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return _Bad(VerifyReason.NOT_JSON, f"not a JSON line ({exc})")
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        return _Bad(VerifyReason.BAD_FIELDS, f"expected exactly the fields {sorted(_KEYS)}")
    seq, utc, prev, record, h = obj["seq"], obj["utc"], obj["prev"], obj["record"], obj["hash"]
    if not (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and isinstance(utc, str)
        and isinstance(prev, str)
        and isinstance(h, str)
        and isinstance(record, dict)
    ):
        return _Bad(VerifyReason.BAD_FIELDS, "seq/utc/prev/record/hash have the wrong types")
    try:
        canonical = canonical_json(obj)
    except ValueError as exc:  # a "\ud800" escape parses but cannot be written back as UTF-8
        return _Bad(VerifyReason.NOT_CANONICAL, f"line has no canonical form ({exc})")
    if canonical != body:
        return _Bad(VerifyReason.NOT_CANONICAL, "line is not in canonical form (edited by hand?)")
    if seq != expect_seq:
        return _Bad(VerifyReason.BAD_SEQ, f"seq {seq}, expected {expect_seq} (line deleted, inserted or moved)")
    if prev != expect_prev:
        return _Bad(VerifyReason.BAD_PREV, "prev does not match the hash of the line before")
    if entry_hash(seq, utc, prev, record) != h:
        return _Bad(VerifyReason.BAD_HASH, "hash does not match the line's content (line edited)")
    return Entry(seq, utc, prev, record, h)


def _scan(f: IO[bytes]) -> Iterator[tuple[int, Entry | _Bad]]:
    """(line number, entry or the first problem); stops after the first problem."""
    expect_seq, expect_prev = 0, GENESIS
    line_no = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_no += 1
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE_BYTES:
                yield line_no, _Bad(VerifyReason.LINE_TOO_LONG, f"line longer than {MAX_LINE_BYTES} bytes")
            else:
                yield line_no, _Bad(VerifyReason.TORN_LINE, f"last line is incomplete ({len(raw)} bytes, no newline)")
            return
        got = _check_line(raw, expect_seq, expect_prev)
        yield line_no, got
        if isinstance(got, _Bad):
            return
        expect_seq, expect_prev = got.seq + 1, got.hash


def verify(path: str | Path, anchor: Head | None = None) -> VerifyResult:
    """Check the whole chain. With `anchor` (a head published earlier), also catch deleted tail lines."""
    count, head = 0, EMPTY_HEAD
    anchor_hash: str | None = None
    try:
        with open(path, "rb") as f:
            for line_no, got in _scan(f):
                if isinstance(got, _Bad):
                    return VerifyResult(False, count, line_no, got.reason, f"line {line_no}: {got.detail}", head)
                count, head = count + 1, Head(got.seq, got.hash)
                if anchor is not None and got.seq == anchor.seq:
                    anchor_hash = got.hash
    except OSError as exc:
        return VerifyResult(False, 0, None, VerifyReason.UNREADABLE, f"{path}: {exc.strerror or exc}")
    if anchor is not None:
        if head.seq < anchor.seq:
            detail = f"file ends at seq {head.seq} but the anchor is seq {anchor.seq}: lines deleted at the end"
            return VerifyResult(False, count, count + 1, VerifyReason.TRUNCATED, detail, head)
        if anchor_hash != anchor.hash:
            detail = f"line {anchor.seq + 1}: hash differs from the anchor (chain rewritten)"
            return VerifyResult(False, count, anchor.seq + 1, VerifyReason.ANCHOR_MISMATCH, detail, head)
    return VerifyResult(True, count, None, VerifyReason.OK, f"{count} records", head)


def iter_entries(path: str | Path) -> Iterator[Entry]:
    """Verified entries in order (for replay). Raises `AuditCorruptError` at the first bad line."""
    with open(path, "rb") as f:
        for line_no, got in _scan(f):
            if isinstance(got, _Bad):
                raise AuditCorruptError(path, f"line {line_no}: {got.detail}")
            yield got


def parse_anchor(text: str) -> Head:
    """`SEQ:HASH` as published on MQTT `audit/head` (raises ValueError naming the problem)."""
    seq, sep, digest = text.strip().partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"--anchor {text!r}: expected SEQ:HASH, a sequence number and a 64-hex-digit SHA-256")
    return Head(int(seq), digest)


def audit_verify_main(path: str | Path, out: IO[str] | None = None, anchor: str | None = None) -> int:
    """`edge-gateway audit verify FILE [--anchor SEQ:HASH]`: exit 0 ok, 1 tampered/damaged/truncated,
    2 unreadable or a bad anchor. Without an anchor, a deleted tail cannot be told from a file
    that simply ended there: anchors published earlier (MQTT audit/head) close that gap."""
    stream = out if out is not None else sys.stdout
    try:
        head = parse_anchor(anchor) if anchor is not None else None
    except ValueError as exc:
        print(f"edge-gateway audit verify: {exc}", file=sys.stderr)
        return 2
    r = verify(path, head)
    if r.reason is VerifyReason.UNREADABLE:
        print(f"UNREADABLE: {r.detail}", file=stream)
        return 2
    if r.reason is VerifyReason.TRUNCATED and head is not None:
        print(f"TRUNCATED: {path}: the file ends at seq {r.head.seq} but the anchor is seq {head.seq}: records "
              f"{r.head.seq + 1}..{head.seq} are missing; {r.count} good records before the cut", file=stream)
        return 1
    if not r.ok:
        print(f"TAMPERED: {path}: {r.detail} [{r.reason}]; {r.count} good lines before it", file=stream)
        return 1
    tail = "" if head is None else f"; anchor seq={head.seq} present unchanged, {r.head.seq - head.seq} after it"
    print(f"OK: {path}: {r.count} records, head seq={r.head.seq} hash={r.head.hash}{tail}", file=stream)
    return 0


# --- writing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TornTail:
    """What reopening found after the last newline and removed."""

    offset: int
    """Byte offset where the torn bytes started (the file was truncated here)."""
    size: int
    sha256: str


class AuditLog:
    """The single writer of one audit file. Opening restores the head and repairs a torn tail."""

    def __init__(self, path: str | Path, *, fsync_every: int = 1, clock: Callable[[], float] = time.time) -> None:
        if fsync_every < 1:
            raise ValueError(f"AuditLog({path}): fsync_every must be >= 1, got {fsync_every}")
        self.path = Path(path)
        self._fsync_every = fsync_every
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = 0
        self._broken = False
        self.recovered: TornTail | None = None
        """Set when opening truncated a torn last line."""
        existed = self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditOpenError(
                self.path, f"cannot open ({exc.strerror}); create its directory and make it writable by the daemon"
            ) from exc
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise AuditLockedError(
                    self.path, "already open for writing by another process; run one daemon per audit file"
                ) from exc
            if not existed:
                _fsync_dir(self.path.parent)  # the new file's name must survive a power cut too
            self.last_kind: str | None = None
            """Kind of the last record found at open (None: an empty log); a clean stop leaves gateway_stopped."""
            self._size, self._head, torn = self._restore()
            if torn is not None:
                self._repair(torn)
        except BaseException:
            os.close(self._fd)
            raise
        log.info("audit_opened", path=str(self.path), seq=self._head.seq)

    @property
    def head(self) -> Head:
        return self._head

    def _restore(self) -> tuple[int, Head, bytes | None]:
        """(size of the good part, head, torn bytes after the last newline or None)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, EMPTY_HEAD, None
        # Read backwards until the chunk holds the last complete line (or the whole file).
        chunk = 64 * 1024
        while True:
            start = max(0, size - chunk)
            data = os.pread(self._fd, size - start, start)
            nl = data.rfind(b"\n")
            prev_nl = data.rfind(b"\n", 0, nl) if nl >= 0 else -1
            if start == 0 or prev_nl >= 0 or chunk > MAX_LINE_BYTES + 2:
                break
            chunk *= 4
        torn = data[nl + 1 :] if nl + 1 < len(data) else None
        good_size = start + nl + 1 if nl >= 0 else 0
        if nl < 0:
            if start != 0:
                raise AuditCorruptError(self.path, f"no newline in the last {len(data)} bytes; the file is not a log")
            return 0, EMPTY_HEAD, torn
        if prev_nl < 0 and start != 0:
            raise AuditCorruptError(self.path, "last line longer than the limit")
        last = data[prev_nl + 1 : nl + 1]
        got = _check_last(last)
        if isinstance(got, _Bad):
            raise AuditCorruptError(
                self.path,
                f"last complete line (ending at byte {good_size}) is invalid: {got.detail}; "
                "run `edge-gateway audit verify` on it and move the file aside to start a new chain",
            )
        self.last_kind = str(got.record.get("kind", ""))
        return good_size, Head(got.seq, got.hash), torn

    def _repair(self, torn: bytes) -> None:
        t = TornTail(self._size, len(torn), hashlib.sha256(torn).hexdigest())
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        self.recovered = t
        log.warning("audit_torn_tail_truncated", path=str(self.path), offset=t.offset, size=t.size)
        self.append(
            {
                "kind": "audit_recovery",
                "reason": "torn_tail",
                "offset": t.offset,
                "truncated_bytes": t.size,
                "truncated_sha256": t.sha256,
                "truncated_prefix": torn[:256].decode("utf-8", errors="replace"),
            }
        )

    def append(self, record: Mapping[str, Any]) -> Head:
        """Append one record; returns the new head. Raises AuditRecordError (nothing written)
        or AuditWriteError (the partial line is removed when the disk lets us)."""
        kind = record.get("kind") if isinstance(record, Mapping) else None
        if not isinstance(kind, str) or not kind:
            raise AuditRecordError(self.path, "a record must be a JSON object with a non-empty string 'kind'")
        with self._lock:
            if self._fd < 0:
                raise AuditWriteError(self.path, "append after close; open a new AuditLog")
            if self._broken:
                raise AuditWriteError(self.path, "an earlier write failed and could not be undone; reopen the log")
            seq, prev = self._head.seq + 1, self._head.hash
            utc = _utc_iso(self._clock())
            try:
                rec = loads_strict(canonical_json(record))  # a plain-JSON copy, so the hash is of what is stored
                h = entry_hash(seq, utc, prev, rec)
                line = canonical_json({"seq": seq, "utc": utc, "prev": prev, "record": rec, "hash": h}) + b"\n"
            except (ValueError, TypeError, RecursionError) as exc:
                raise AuditRecordError(self.path, f"record is not plain JSON ({exc})") from exc
            if len(line) > MAX_LINE_BYTES:
                raise AuditRecordError(self.path, f"record makes a {len(line)}-byte line > {MAX_LINE_BYTES}")
            self._write(line)
            self._head = Head(seq, h)
            return self._head

    def _write(self, line: bytes) -> None:
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._pending += 1
            if self._pending >= self._fsync_every:
                os.fsync(self._fd)
                self._pending = 0
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._broken = True
            raise AuditWriteError(self.path, f"write failed ({exc.strerror}); check disk space and health") from exc
        self._size += len(line)

    def sync(self) -> None:
        """fsync lines written since the last sync (for `fsync_every` > 1)."""
        with self._lock:
            if self._pending:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise AuditWriteError(self.path, f"fsync failed ({exc.strerror})") from exc
                self._pending = 0

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            with self._lock:
                os.close(self._fd)  # releases the flock
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_last(raw: bytes) -> Entry | _Bad:
    """Check a line on its own (its predecessor is not read on reopen: seq/prev are taken as given)."""
    try:
        obj = loads_strict(raw[:-1].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return _Bad(VerifyReason.NOT_JSON, f"not a JSON line ({exc})")
    if not isinstance(obj, dict):
        return _Bad(VerifyReason.BAD_FIELDS, "not an object")
    seq, prev = obj.get("seq"), obj.get("prev")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(prev, str):
        return _Bad(VerifyReason.BAD_FIELDS, "seq/prev missing or of the wrong type")
    return _check_line(raw, seq, prev)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

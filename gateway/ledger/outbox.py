"""Durable, ordered outbox for the records that must reach the central ledger exactly once.

`put` returns once the record is on disk; `run` delivers each stream in order, one record
in flight per stream; the record's uuid is the ledger's idempotency key, so every resend
after a crash, timeout or power cut is harmless.

Durability choice: SQLite in WAL mode with ``synchronous=FULL``. In WAL mode ``NORMAL``
only fsyncs the WAL at checkpoints, so after a power cut the last commits can roll back
even though ``put`` had returned: a record acknowledged to the engine would be lost.
``FULL`` fsyncs the WAL at every commit. Group commit pays that fsync once per batch of
concurrent puts, which keeps the rate high. Bookkeeping that can safely be redone (marking
a record sent or parked, counting attempts) is committed with ``NORMAL``: if a power cut
loses such a mark, the record is sent again and the ledger answers "duplicate"; the next
``FULL`` commit's fsync covers those WAL frames anyway, since the WAL is append-only.

All database calls run on one dedicated thread that owns the connection.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import json
import os
import random
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

__all__ = [
    "STREAMS",
    "Outbox",
    "OutboxError",
    "OutboxFull",
    "OutboxRecord",
    "OutboxStats",
    "Send",
    "SendKind",
    "SendResult",
    "State",
]

log = structlog.get_logger(__name__)

STREAMS: tuple[str, ...] = ("hazards", "permit-events")
"""The ledger's record streams; each is delivered in order, independently of the other."""

_T = TypeVar("_T")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order = delivery order in a stream
    stream TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,              -- the record's uuid, the ledger's idempotency key
    seq INTEGER NOT NULL,                  -- per-stream sequence number, gap-free at put time
    body TEXT NOT NULL,                    -- the record as JSON, id and seq included
    created_utc TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_epoch REAL NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'parked')),
    park_reason TEXT,
    last_error TEXT,
    sent_utc TEXT,
    UNIQUE (stream, seq)
);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox (stream, state, id);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
CREATE TABLE IF NOT EXISTS outbox_seq (stream TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


from gateway.ledger.outbox_types import (  # noqa: E402 - re-exported: the public API stays here
    OutboxError,
    OutboxFull,
    OutboxRecord,
    OutboxStats,
    Send,
    SendKind,
    SendResult,
    State,
)


@dataclass(slots=True)
class _PutRequest:
    records: list[tuple[str, str, dict[str, Any]]]
    future: asyncio.Future[list[str]]


@dataclass(slots=True)
class _Counts:
    pending: int = 0
    parked: int = 0
    sent: int = 0
    seq: dict[str, int] = field(default_factory=dict)


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Outbox:
    """SQLite-backed outbox. Use as ``async with Outbox(path) as ob:`` or open()/close().

    max_records bounds the undelivered (pending + parked) records; keep_sent is how many
    sent records are kept as a tail for inspection before being deleted. Backoff on a
    failing head is exponential with jitter from backoff_base_s up to backoff_max_s.
    send_timeout_s is a safety net around the send callable (which has its own timeout).
    on_connect runs on the fresh connection after the pragmas (tests use it to set
    max_page_count and so provoke a real "database or disk is full").
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_records: int = 100_000,
        *,
        streams: Sequence[str] = STREAMS,
        keep_sent: int = 1_000,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        send_timeout_s: float = 30.0,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_records < 1 or keep_sent < 0 or not streams:
            raise ValueError("Outbox: max_records >= 1, keep_sent >= 0 and at least one stream are required")
        self.path = Path(path)
        self.max_records = max_records
        self.streams = tuple(streams)
        self.keep_sent = keep_sent
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.send_timeout_s = send_timeout_s
        self._on_connect = on_connect
        self._rng = rng or random.Random()
        self._exec: ThreadPoolExecutor | None = None
        self._con: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._counts = _Counts()
        self._transactions = self._puts = 0
        self._queue: list[_PutRequest] = []
        self._work = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._wake = {s: asyncio.Event() for s in self.streams}
        self._kick = {s: asyncio.Event() for s in self.streams}
        self._blocked: set[str] = set()
        self._running = False
        self._log = log.bind(outbox=str(self.path))

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (or create) the database, take the single-owner lock, start the writer."""
        if self._exec is not None:
            raise OutboxError(str(self.path), "open", "already open")
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-sqlite")
        try:
            await self._call("open", self._open_db)
        except BaseException:
            self._exec.shutdown(wait=False)
            self._exec = None
            raise
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"outbox_writer[{self.path.name}]")
        self._log.info("outbox_opened", pending=self._counts.pending, parked=self._counts.parked)

    async def close(self) -> None:
        """Commit what is queued, then close. Cancel `run()` before calling this."""
        if self._exec is None:
            return
        self._closing = True
        self._work.set()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
            self._writer = None
        try:
            await self._call("close", self._close_db)
        finally:
            self._exec.shutdown(wait=True)
            self._exec = None

    def _open_db(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Two daemons on one outbox would interleave a stream: refuse the second.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise OutboxError(str(self.path), "open", f"held by another process ({exc}); stop it first") from exc
        self._lock_fd = fd
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL is required")
            con.execute("PRAGMA synchronous=FULL")
            if self._on_connect is not None:
                self._on_connect(con)
            con.executescript(_SCHEMA)
            c = _Counts()
            for state, n in con.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
                setattr(c, state, n)
            c.seq = dict(con.execute("SELECT stream, last FROM outbox_seq").fetchall())
        except BaseException:
            con.close()
            self._unlock()
            raise
        self._con, self._counts = con, c

    def _close_db(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd releases the flock
            self._lock_fd = None

    async def _call(self, op: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Run fn on the database thread; sqlite errors become OutboxError."""
        if self._exec is None:
            raise OutboxError(str(self.path), op, "outbox is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._exec, fn, *args)
        except sqlite3.Error as exc:
            raise OutboxError(str(self.path), op, f"{type(exc).__name__}: {exc}") from exc

    async def put(self, stream: str, body: Mapping[str, Any]) -> str:
        """Add one record; return its key once it is durably on disk.

        The key is body["id"] when given (so a caller that retries after an error cannot
        create a second record), else a new uuid4. The outbox sets body["id"] and assigns
        body["seq"]. Raises OutboxFull when full, OutboxError on a database failure.
        """
        return (await self.put_many([(stream, body)]))[0]

    async def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Add several records atomically (all or none), in the given order."""
        records = [self._prepare(stream, body) for stream, body in items]
        if not records:
            return []
        if self._exec is None or self._closing:
            raise OutboxError(str(self.path), "put", "outbox is not open")
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append(_PutRequest(records, fut))
        self._work.set()
        # Shielded: if our caller is cancelled the commit still completes for the batch.
        return await asyncio.shield(fut)

    def _prepare(self, stream: str, body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
        if stream not in self._wake:
            raise ValueError(f"outbox put: unknown stream {stream!r}; expected one of {self.streams}")
        if "seq" in body:
            raise ValueError("outbox put: body must not carry 'seq'; the outbox assigns it")
        key = str(body.get("id") or uuid.uuid4())
        if not _UUID_RE.match(key):
            raise ValueError(f"outbox put: body id {key!r} is not a lowercase hyphenated uuid")
        rec = dict(body)
        rec["id"] = key
        json.dumps(rec)  # fail in the caller, not in the batch, on an unserializable body
        return stream, key, rec

    async def _write_loop(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            batch, self._queue = self._queue, []
            if not batch:
                if self._closing:
                    return
                continue
            try:
                results = await self._call("put", self._commit, batch)
            except OutboxError as exc:
                self._log.error("outbox_put_failed", reason=exc.reason, records=sum(len(r.records) for r in batch))
                results = [exc] * len(batch)
            except asyncio.CancelledError:
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(
                            OutboxError(str(self.path), "put", "writer cancelled mid-commit; outcome unknown")
                        )
                raise
            touched: set[str] = set()
            for req, res in zip(batch, results, strict=True):
                if req.future.done():
                    continue
                if isinstance(res, BaseException):
                    req.future.set_exception(res)
                else:
                    req.future.set_result(res)
                    touched.update(s for s, _, _ in req.records)
            for s in touched:
                self._wake[s].set()
            if self._closing and not self._queue:
                return
            if self._queue:
                self._work.set()

    def _commit(self, batch: list[_PutRequest]) -> list[list[str] | BaseException]:
        """One transaction for the whole batch; each request is all-or-nothing."""
        con = self._db()
        seq = dict(self._counts.seq)
        undelivered = self._counts.pending + self._counts.parked
        added = 0
        out: list[list[str] | BaseException] = []
        now = _utc()
        try:
            con.execute("BEGIN IMMEDIATE")
            seen: set[str] = set()
            for req in batch:
                fresh = [
                    r
                    for r in req.records
                    if r[1] not in seen and con.execute("SELECT 1 FROM outbox WHERE key=?", (r[1],)).fetchone() is None
                ]
                if len(fresh) < len(req.records):
                    self._log.info("outbox_put_duplicate_key", skipped=len(req.records) - len(fresh))
                if undelivered + added + len(fresh) > self.max_records:
                    out.append(OutboxFull(str(self.path), self.max_records, undelivered + added, len(fresh)))
                    continue
                for stream, key, rec in fresh:
                    seq[stream] = seq.get(stream, 0) + 1
                    rec["seq"] = seq[stream]
                    con.execute(
                        "INSERT INTO outbox (stream, key, seq, body, created_utc) VALUES (?, ?, ?, ?, ?)",
                        (stream, key, seq[stream], json.dumps(rec, separators=(",", ":")), now),
                    )
                    seen.add(key)
                added += len(fresh)
                out.append([key for _, key, _ in req.records])
            con.executemany(
                "INSERT INTO outbox_seq (stream, last) VALUES (?, ?) "
                "ON CONFLICT (stream) DO UPDATE SET last = excluded.last",
                [(s, n) for s, n in seq.items() if n != self._counts.seq.get(s)],
            )
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
            raise
        self._counts.seq = seq
        self._counts.pending += added
        self._transactions += 1
        self._puts += added
        return out

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise sqlite3.ProgrammingError("outbox database is closed")
        return self._con

    async def run(self, send: Send) -> None:
        """Deliver every stream in order until cancelled: one sender task per stream.

        Raises OutboxError if the database fails; the supervisor restarts it with backoff.
        """
        if self._running:
            raise RuntimeError("Outbox.run is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                for s in self.streams:
                    tg.create_task(self._send_stream(s, send), name=f"outbox_send[{s}]")
        finally:
            self._running = False
            self._blocked.clear()

    def kick(self) -> None:
        """Cut every backoff short (e.g. the network just came back)."""
        for ev in self._kick.values():
            ev.set()

    async def _send_stream(self, stream: str, send: Send) -> None:
        failures = 0
        slog = self._log.bind(stream=stream)
        while True:
            head = await self._call("send", self._head, stream)
            if head is None:
                self._wake[stream].clear()
                head = await self._call("send", self._head, stream)  # a put may have landed meanwhile
                if head is None:
                    await self._wake[stream].wait()
                    continue
            rid, key, body = head
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    result = await send(stream, key, json.loads(body))
            except (OSError, TimeoutError) as exc:
                result = SendResult.retry(f"{type(exc).__name__}: {exc}")
            if result.kind is SendKind.RETRY:
                failures += 1
                delay = self._backoff(failures, result.retry_after_s)
                await self._call("send", self._note_retry, rid, result.reason, delay)
                if stream not in self._blocked:
                    self._blocked.add(stream)
                    slog.warning("outbox_stream_blocked", key=key, status=result.status, reason=result.reason)
                self._kick[stream].clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._kick[stream].wait()
                continue
            if stream in self._blocked:
                self._blocked.discard(stream)
                slog.info("outbox_stream_recovered", attempts=failures + 1)
            failures = 0
            if result.kind is SendKind.OK:
                await self._call("send", self._mark_sent, rid)
            else:
                await self._call("send", self._park, rid, f"{result.status}: {result.reason}")
                slog.warning("outbox_record_parked", key=key, status=result.status, reason=result.reason)

    def _backoff(self, failures: int, retry_after_s: float | None) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(failures - 1, 30))
        delay = cap * (0.5 + 0.5 * self._rng.random())  # jitter, never below half the step
        return max(delay, min(retry_after_s or 0.0, self.backoff_max_s))

    def _head(self, stream: str) -> tuple[int, str, str] | None:
        row = (
            self._db()
            .execute(
                "SELECT id, key, body FROM outbox WHERE stream=? AND state='pending' ORDER BY id LIMIT 1", (stream,)
            )
            .fetchone()
        )
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]))

    @contextlib.contextmanager
    def _redoable(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose loss in a power cut only causes a harmless resend."""
        con = self._db()
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        finally:
            con.execute("PRAGMA synchronous=FULL")

    def _note_retry(self, rid: int, reason: str, delay: float) -> None:
        with self._redoable() as con:
            con.execute(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, next_try_epoch=? WHERE id=?",
                (reason[:500], datetime.now(UTC).timestamp() + delay, rid),
            )

    def _mark_sent(self, rid: int) -> None:
        c = self._counts
        with self._redoable() as con:
            con.execute(
                "UPDATE outbox SET state='sent', attempts=attempts+1, sent_utc=? WHERE id=? AND state='pending'",
                (_utc(), rid),
            )
            changed = con.execute("SELECT changes()").fetchone()[0]
            sent = c.sent + changed
            if sent > self.keep_sent:
                con.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state='sent' ORDER BY id LIMIT ?)",
                    (sent - self.keep_sent,),
                )
                sent = self.keep_sent
        c.pending -= changed
        c.sent = sent

    def _park(self, rid: int, reason: str) -> None:
        with self._redoable() as con:
            con.execute(
                "UPDATE outbox SET state='parked', attempts=attempts+1, park_reason=? WHERE id=? AND state='pending'",
                (reason[:1000], rid),
            )
            changed = con.execute("SELECT changes()").fetchone()[0]
        self._counts.pending -= changed
        self._counts.parked += changed

    async def retry(self, record_id: int) -> bool:
        """Un-park one record: it becomes pending and is sent next in its stream.

        Returns False if no parked record has that id.
        """
        stream = await self._call("retry", self._unpark, record_id)
        if stream is None:
            return False
        self._log.info("outbox_record_unparked", id=record_id, stream=stream)
        self._wake[stream].set()
        return True

    def _unpark(self, rid: int) -> str | None:
        with self._redoable() as con:
            row = con.execute("SELECT stream FROM outbox WHERE id=? AND state='parked'", (rid,)).fetchone()
            if row is None:
                return None
            con.execute("UPDATE outbox SET state='pending', park_reason=NULL WHERE id=?", (rid,))
        self._counts.parked -= 1
        self._counts.pending += 1
        return str(row[0])

    async def list(
        self, state: State | str | None = None, stream: str | None = None, limit: int = 100
    ) -> list[OutboxRecord]:
        """Records in delivery order, optionally filtered by state and stream."""
        return await self._call("list", self._list, None if state is None else State(state), stream, limit)

    def _list(self, state: State | None, stream: str | None, limit: int) -> builtins.list[OutboxRecord]:
        sql = (
            "SELECT id, stream, key, seq, body, created_utc, attempts, state, park_reason, last_error, sent_utc"
            " FROM outbox WHERE (?1 IS NULL OR state=?1) AND (?2 IS NULL OR stream=?2) ORDER BY id LIMIT ?3"
        )
        rows = self._db().execute(sql, (None if state is None else state.value, stream, limit)).fetchall()
        return [
            OutboxRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], State(r[7]), r[8], r[9], r[10])
            for r in rows
        ]

    def depth(self) -> int:
        """Records waiting to be sent (parked ones not included)."""
        return self._counts.pending

    def parked_count(self) -> int:
        """Records the ledger rejected, waiting for an operator's `retry()`."""
        return self._counts.parked

    def stats(self) -> OutboxStats:
        c = self._counts
        return OutboxStats(c.pending, c.parked, c.sent, self._transactions, self._puts, tuple(sorted(self._blocked)))

"""`edge-gateway outbox list|retry`: look at the ledger outbox and un-park a record.

    edge-gateway outbox list [--state parked|pending|sent] [--stream S] [--limit N] [--json]
                             [--config FILE | --db PATH]
    edge-gateway outbox retry ID [--config FILE | --db PATH]

The outbox file is ``<state.dir>/outbox.db`` of the configuration (``--config``, default
/etc/edge-gateway/gateway.toml; a relative state.dir is relative to the file, as for
`run`), or ``--db PATH``.

Living next to a running daemon (it owns the outbox and holds ``outbox.db.lock``):

- `list` only reads, through a read-only SQLite connection. WAL lets it read while the
  daemon writes; it never blocks the daemon and needs no lock. Safe at any time.
- `retry` changes the outbox, and the daemon keeps its counters and its per-stream wake-ups
  in memory: an edit behind its back would leave the record waiting and the status page
  wrong. So `retry` takes the same single-owner lock the daemon takes. While the daemon
  runs it refuses (exit 1) and says to retry through the daemon instead: the status page's
  admin API, ``POST /api/outbox/retry {"id": N}``, or stop the daemon first. With the
  daemon stopped it opens the outbox like the daemon does (`gateway.ledger.outbox.Outbox`), un-parks
  the record in one short transaction and releases the lock; the record is sent first in
  its stream when the daemon next starts. A daemon that starts during those few
  milliseconds finds the lock taken and fails to open its outbox (a loud records fault):
  run `retry` with the service stopped.

Exit codes: 0 ok, 2 usage or no such parked record, 1 runtime error (no outbox file,
unreadable, locked by the running daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

from gateway.config import ConfigError
from gateway.ledger.outbox import Outbox, OutboxError, State

__all__ = ["DEFAULT_CONFIG", "daemon_holds", "outbox_list_main", "outbox_path", "outbox_retry_main"]

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = Path("/etc/edge-gateway/gateway.toml")
"""Where the systemd unit's `run --config` points."""

_COLUMNS = "id, stream, key, seq, state, attempts, created_utc, sent_utc, park_reason, last_error, body"


class _Fail(Exception):
    """A message for stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits with 2 by itself; keep that, but no SystemExit
        raise _Fail(EXIT_USAGE, f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"gateway configuration; the outbox is <state.dir>/outbox.db (default {DEFAULT_CONFIG})",
    )
    where.add_argument("--db", type=Path, default=None, help="the outbox database file itself")


def outbox_path(config: Path | None, db: Path | None) -> Path:
    """The outbox file: --db as given, else <state.dir>/outbox.db of the configuration."""
    if db is not None:
        return db
    from gateway.config.loader import load, resolve_path

    path = config or DEFAULT_CONFIG
    try:
        cfg = load(path)
    except ConfigError as exc:
        raise _Fail(EXIT_USAGE, f"{exc}\n(or give the outbox file with --db PATH)") from None
    state_dir = resolve_path(path.parent, cfg.state.dir)
    return state_dir / "outbox.db"


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise _Fail(EXIT_RUNTIME, f"no outbox at {path}: wrong --config/--db, or the gateway never ran with it")
    return path


def daemon_holds(path: Path) -> bool:
    """Whether another process (the daemon) holds the outbox's single-owner lock right now."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # also releases our probe lock
    return False


# ---- list ------------------------------------------------------------------------------


def _read(path: Path, state: str | None, stream: str | None, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The selected records (body parsed) and the count of every state."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=2.0)
    except sqlite3.Error as exc:
        raise _Fail(EXIT_RUNTIME, f"cannot open {path} read-only: {exc} (run as the gateway's user?)") from exc
    try:
        rows = con.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE (?1 IS NULL OR state=?1) AND (?2 IS NULL OR stream=?2)"
            " ORDER BY id LIMIT ?3",
            (state, stream, limit),
        ).fetchall()
        counts = dict(con.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    except sqlite3.Error as exc:
        raise _Fail(EXIT_RUNTIME, f"cannot read {path}: {exc} (is it an outbox database?)") from exc
    finally:
        con.close()
    names = [c.strip() for c in _COLUMNS.split(",")]
    out = [dict(zip(names, r, strict=True)) for r in rows]
    for rec in out:
        rec["body"] = json.loads(rec["body"])
    return out, counts


def _table(records: list[dict[str, Any]], counts: dict[str, int], out: TextIO) -> None:
    print(f"{'id':>6}  {'stream':<13} {'seq':>6}  {'state':<7} {'tries':>5}  {'created':<24} detail", file=out)
    for r in records:
        detail = r["park_reason"] or r["last_error"] or r["body"].get("title") or r["body"].get("event") or ""
        print(
            f"{r['id']:>6}  {r['stream']:<13} {r['seq']:>6}  {r['state']:<7} {r['attempts']:>5}  "
            f"{r['created_utc']:<24} {' '.join(str(detail).split())[:100]}",
            file=out,
        )
    summary = ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in State)
    print(f"-- {len(records)} shown; in the outbox: {summary}", file=out)
    if counts.get(State.PARKED.value):
        print("-- a parked record goes out again with: edge-gateway outbox retry ID", file=out)


def outbox_list_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`edge-gateway outbox list`; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    p = _Parser(prog="edge-gateway outbox list", description="Records in the ledger outbox, in delivery order.")
    p.add_argument("--state", choices=[s.value for s in State], default=None, help="only records in this state")
    p.add_argument("--stream", default=None, help="only this stream (hazards, permit-events)")
    p.add_argument("--limit", type=int, default=100, help="at most N records (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    _common(p)
    try:
        a = p.parse_args(argv)
        if a.limit < 1:
            raise _Fail(EXIT_USAGE, "edge-gateway outbox list: --limit must be >= 1")
        path = _existing(outbox_path(a.config, a.db))
        records, counts = _read(path, a.state, a.stream, a.limit)
    except _Fail as f:
        print(f.message, file=err)
        return f.code
    if a.json:
        for r in records:
            print(json.dumps(r, ensure_ascii=False, separators=(",", ":")), file=out)
    else:
        _table(records, counts, out)
    return EXIT_OK


# ---- retry -----------------------------------------------------------------------------


async def _unpark(path: Path, record_id: int) -> bool:
    async with Outbox(path) as ob:
        return await ob.retry(record_id)


def outbox_retry_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`edge-gateway outbox retry ID`; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    p = _Parser(prog="edge-gateway outbox retry", description="Send a parked record again (first in its stream).")
    p.add_argument("id", help="the record's id (first column of `outbox list --state parked`)")
    _common(p)
    try:
        a = p.parse_args(argv)
        try:
            rid = int(a.id)
        except ValueError:
            raise _Fail(EXIT_USAGE, f"edge-gateway outbox retry: id {a.id!r} is not a number") from None
        if rid < 1:
            raise _Fail(EXIT_USAGE, f"edge-gateway outbox retry: id {rid} must be >= 1")
        path = _existing(outbox_path(a.config, a.db))
        if daemon_holds(path):
            raise _Fail(
                EXIT_RUNTIME,
                f"{path} is in use by the running gateway: retry through it (status page, admin: "
                f'POST /api/outbox/retry {{"id": {rid}}}) or stop the service first',
            )
        try:
            ok = asyncio.run(_unpark(path, rid))
        except OutboxError as exc:
            raise _Fail(EXIT_RUNTIME, f"{exc}") from exc
        if not ok:
            raise _Fail(
                EXIT_USAGE, f"no parked record with id {rid} in {path} (see: edge-gateway outbox list --state parked)"
            )
    except _Fail as f:
        print(f.message, file=err)
        return f.code
    print(f"record {rid} is pending again; it is sent first in its stream when the gateway runs", file=out)
    return EXIT_OK

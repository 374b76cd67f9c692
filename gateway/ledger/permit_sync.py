"""Permit sync: signed permits pulled from the central ledger, and kept for offline work.

`PermitSync.run()` polls ``GET /v1/permits?site=&zone=`` for each of this gateway's zones
and hands every new or changed signed document to the permit loader, which verifies it
(Ed25519 against the pinned ledger key, site, zone, expiry, validity) and passes the good
ones to the engine. Nothing here decides whether a permit is good: the loader does, every
time, including for documents read back from the cache.

Offline: every document the loader accepted is cached (SQLite, WAL) with its signature.
`load_cache()` at start submits the cached documents again, so a gateway that restarts
while the ledger is unreachable keeps the permits it had until they expire. A cached
document is trusted for nothing: it is re-verified (signature, site, zone, expiry,
validity) like one fresh from the network, and one that fails is deleted. Expired
documents (valid_to passed) are dropped from the cache at start and after every poll.

Unchanged documents are not submitted again on every poll: each submission replaces the
engine's copy of the permit and is logged, so only a new signature (a new version) is
submitted. A document the loader refused is refused once per version, not once per poll.

A successful poll of a zone makes the cache of that zone equal to what the loader accepted
from that answer: a permit the ledger no longer lists is no longer cached (the engine keeps
it until a signed cancellation or its expiry; withdrawing permission needs a signed
document, never an absence).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from gateway.core.clock import Clock, SystemClock, iso
from gateway.ledger.client import LedgerError
from rules.permit import Permit
from rules.revision import RevisionRefusal

__all__ = ["PermitCache", "PermitClient", "PermitSink", "PermitSync", "SyncStatus"]

log = structlog.get_logger("permit_sync")

_T = TypeVar("_T")

REVISION_REFUSALS = frozenset(r.value for r in RevisionRefusal)
"""Refusals that keep the cached permit: it is a newer (or the final) revision than the one served."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS permits (
    permit_id TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    valid_to REAL NOT NULL,     -- epoch seconds UTC, from the verified permit
    signature TEXT NOT NULL,
    doc TEXT NOT NULL,          -- the signed document exactly as the loader accepted it
    cached_utc TEXT NOT NULL
);
"""


class PermitSink(Protocol):
    """What the sync hands documents to (gateway.core.inputs.PermitLoader)."""

    def submit(self, doc: bytes | str | dict[str, Any], source: str) -> Permit | str:
        """Verify one signed document; the permit, or the rejection reason."""
        ...


class PermitClient(Protocol):
    """The part of gateway.ledger.client.LedgerClient the sync uses."""

    async def get_permits(self, site: str, zone: str | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """For the status page."""

    last_ok_utc: str | None
    """When every zone was last polled successfully (ISO UTC); None: not yet."""
    last_error: str
    """The last poll's error ("" when the last poll succeeded)."""
    cached: int
    """Signed documents in the offline cache."""
    accepted: int
    """Documents (versions) the loader accepted since start, cache included."""
    rejected: int
    """Documents (versions) the loader refused since start (forged, expired, wrong zone...)."""
    polls: int
    """Poll rounds since start (successful or not)."""
    cache_error: str
    """Why the offline cache cannot be used ("" when it works). Permits still sync without it."""


class PermitCache:
    """The offline copy of accepted signed permits: a small SQLite file in WAL mode.

    Blocking; `PermitSync` calls it through `asyncio.to_thread`. Thread-safe.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._con.execute("PRAGMA journal_mode=WAL")
            # A lost last write only means one permit is fetched again: NORMAL is enough.
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
        except BaseException:
            self._con.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def all(self) -> list[tuple[str, str, float, str, str]]:
        """(permit_id, zone, valid_to, signature, doc) of every cached document."""
        with self._lock:
            rows = self._con.execute(
                "SELECT permit_id, zone, valid_to, signature, doc FROM permits ORDER BY permit_id"
            ).fetchall()
        return [(str(r[0]), str(r[1]), float(r[2]), str(r[3]), str(r[4])) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM permits").fetchone()[0])

    def put(self, permit: Permit, signature: str, doc: str, utc: str) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO permits (permit_id, zone, valid_to, signature, doc, cached_utc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (permit.permit_id, permit.zone_id, permit.valid_to, signature, doc, utc),
            )

    def delete(self, permit_ids: list[str]) -> int:
        with self._lock:
            cur = self._con.executemany("DELETE FROM permits WHERE permit_id=?", [(p,) for p in permit_ids])
            return max(cur.rowcount, 0)

    def keep_only(self, zone: str, permit_ids: set[str]) -> int:
        """Delete the zone's documents not in `permit_ids`; how many went."""
        with self._lock:
            rows = self._con.execute("SELECT permit_id FROM permits WHERE zone=?", (zone,)).fetchall()
            gone = [(r[0],) for r in rows if r[0] not in permit_ids]
            self._con.executemany("DELETE FROM permits WHERE permit_id=?", gone)
        return len(gone)

    def drop_expired(self, now_utc: float) -> int:
        """Delete documents whose valid_to has passed; how many went."""
        with self._lock:
            cur = self._con.execute("DELETE FROM permits WHERE valid_to <= ?", (now_utc,))
            return max(cur.rowcount, 0)


def _signature(doc: Mapping[str, Any]) -> str:
    sig = doc.get("signature")
    return sig if isinstance(sig, str) else ""


class PermitSync:
    """Polls the ledger for this gateway's permits and keeps an offline cache of them.

    client: a started `gateway.ledger.client.LedgerClient` (or anything with `get_permits`);
    loader: `gateway.core.inputs.PermitLoader` (anything with `submit(doc, source)`);
    zones: the zone ids this gateway serves (one GET per zone per round);
    cache_path: the SQLite cache file, e.g. ``<state dir>/permits.db``.
    On errors the next round waits `backoff_base_s`, doubling up to `backoff_max_s`
    (never longer than needed: a success returns to `poll_s`).
    """

    def __init__(
        self,
        client: PermitClient,
        loader: PermitSink,
        site: str,
        zones: list[str],
        cache_path: str | Path,
        poll_s: float = 30.0,
        clock: Clock | None = None,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if poll_s <= 0 or backoff_base_s <= 0 or backoff_max_s < backoff_base_s:
            raise ValueError("PermitSync: poll_s > 0 and 0 < backoff_base_s <= backoff_max_s are required")
        self.client = client
        self.loader = loader
        self.site = site
        self.zones = list(dict.fromkeys(zones))
        self.cache_path = Path(cache_path)
        self.poll_s = poll_s
        self.clock = clock or SystemClock()
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._rng = rng or random.Random()
        self._cache: PermitCache | None = None
        self._seen: dict[str, str] = {}
        """permit_id -> signature of the version last submitted (accepted or not)."""
        self.last_ok_utc: str | None = None
        self.last_error = ""
        self.accepted = 0
        self.rejected = 0
        self.polls = 0
        self._cached = 0
        self.cache_error = ""
        self._kick = asyncio.Event()

    # ---- start and stop --------------------------------------------------------------
    async def open(self) -> bool:
        """Open (or create) the cache; False (and `cache_error` set) if the file cannot be used.

        Never raises for a bad cache: permits then sync from the ledger without offline copies.
        """
        if self._cache is None:
            try:
                self._cache = await asyncio.to_thread(PermitCache, self.cache_path)
            except (OSError, sqlite3.Error) as exc:
                self._set_cache_error(f"cannot open {self.cache_path}: {exc}")
                return False
            self._set_cache_error("")
        return True

    async def close(self) -> None:
        if self._cache is not None:
            cache, self._cache = self._cache, None
            await asyncio.to_thread(cache.close)

    async def load_cache(self) -> int:
        """Submit every unexpired cached document to the loader again; how many it accepted.

        Expired ones are dropped without being submitted; one the loader refuses now (key
        rotated, file tampered with, no longer valid) is deleted from the cache.
        """
        if not await self.open():
            return 0
        now = self.clock.utc().timestamp()
        expired = await self._do(PermitCache.drop_expired, now) or 0
        rows = await self._do(PermitCache.all) or []
        ok, refused = 0, []
        for pid, _zone, _valid_to, sig, doc in rows:
            verdict = self.loader.submit(doc, "cache")
            self._seen[pid] = sig
            if isinstance(verdict, Permit) and verdict.permit_id == pid:
                ok += 1
                self.accepted += 1
            else:
                refused.append(pid)
                self.rejected += 1
        if refused:
            await self._do(PermitCache.delete, refused)
        self._cached = await self._do(PermitCache.count) or 0
        log.info("permit_cache_loaded", accepted=ok, refused=len(refused), expired=expired, path=str(self.cache_path))
        return ok

    # ---- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Poll until cancelled. Ledger and cache errors are logged on change; polls back off on errors."""
        await self.open()
        failures = 0
        while True:
            error = await self.poll_once()
            if error:
                failures += 1
                step = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(failures - 1, 30))
                delay = step * (0.5 + 0.5 * self._rng.random())
            else:
                failures = 0
                delay = self.poll_s
            self._kick.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._kick.wait()
            except TimeoutError:
                pass

    def kick(self) -> None:
        """Poll now (e.g. an operator pressed "refresh", or the network came back)."""
        self._kick.set()

    async def poll_once(self) -> str:
        """One round over every zone; "" on success, else the (first) error."""
        self.polls += 1
        if self._cache is None:
            await self.open()  # a cache that failed before may work now (disk freed, fixed perms)
        errors: list[str] = []
        for zone in self.zones:
            try:
                docs = await self.client.get_permits(self.site, zone)
            except LedgerError as exc:
                errors.append(str(exc))
                continue
            await self._apply(zone, docs)
        await self._do(PermitCache.drop_expired, self.clock.utc().timestamp())
        self._cached = await self._do(PermitCache.count) or 0
        self._set_error(errors[0] if errors else "")
        if not errors:
            self.last_ok_utc = iso(self.clock.utc())
        return self.last_error

    async def _apply(self, zone: str, docs: list[dict[str, Any]]) -> None:
        listed: set[str] = set()
        for doc in docs:
            pid = doc.get("permit_id")
            sig = _signature(doc)
            if isinstance(pid, str) and self._seen.get(pid) == sig and sig:
                listed.add(pid)  # unchanged version: already submitted (and cached if it was accepted)
                continue
            verdict = self.loader.submit(dict(doc), f"ledger:{zone}")
            if isinstance(pid, str):
                self._seen[pid] = sig
            if isinstance(verdict, Permit):
                self.accepted += 1
                listed.add(verdict.permit_id)
                text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
                await self._do(PermitCache.put, verdict, sig, text, iso(self.clock.utc()))
            else:
                self.rejected += 1
                if isinstance(pid, str) and verdict in REVISION_REFUSALS:
                    listed.add(pid)  # what the cache holds is the newest accepted revision: it stands
                elif isinstance(pid, str):
                    # A refused new version must not leave an older accepted one in the cache.
                    await self._do(PermitCache.delete, [pid])
        gone = await self._do(PermitCache.keep_only, zone, listed)
        if gone:
            log.info("permit_cache_pruned", zone=zone, removed=gone)

    def _set_error(self, error: str) -> None:
        if error == self.last_error:
            return
        if error and not self.last_error:
            log.warning("permit_sync_failed", error=error, cached=self._cached)
        elif error:
            log.warning("permit_sync_error_changed", error=error)
        else:
            log.info("permit_sync_recovered", cached=self._cached)
        self.last_error = error

    def _db(self) -> PermitCache:
        if self._cache is None:
            raise sqlite3.ProgrammingError(f"permit cache {self.cache_path} is not open")
        return self._cache

    async def _do(self, op: Callable[..., _T], *args: Any) -> _T | None:
        """`op(cache, *args)` in a thread; a failing cache is a shown fault, never a crash (None)."""
        if self._cache is None:
            return None  # could not be opened: cache_error already says why
        try:
            result = await asyncio.to_thread(op, self._db(), *args)
        except (OSError, sqlite3.Error) as exc:
            self._set_cache_error(f"{self.cache_path}: {type(exc).__name__}: {exc}")
            return None
        self._set_cache_error("")
        return result

    def _set_cache_error(self, error: str) -> None:
        if error != self.cache_error:
            if error:
                log.error("permit_cache_failed", error=error)
            else:
                log.info("permit_cache_recovered", path=str(self.cache_path))
            self.cache_error = error

    def status(self) -> SyncStatus:
        return SyncStatus(
            self.last_ok_utc, self.last_error, self._cached, self.accepted, self.rejected, self.polls, self.cache_error
        )

    def status_json(self) -> dict[str, Any]:
        """JSON-ready status for the status page snapshot."""
        s = self.status()
        return {
            "last_ok_utc": s.last_ok_utc,
            "last_error": s.last_error or None,
            "cached": s.cached,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "polls": s.polls,
            "cache_error": s.cache_error or None,
        }

"""Reference central ledger for development and tests (docs/ledger-api.yaml), aiohttp + SQLite.

Implements the contract: idempotent POSTs keyed by Idempotency-Key (201 created, 200 the
same record again, 409 same key with another body, 400/422 invalid), permits stored and
served in the gateway's wire format (drivers/ledger/permit_codec.py, the Permit schema of
docs/ledger-api.yaml) and signed with Ed25519 over their RFC 8785 canonical JSON (canon
"jcs"), and competencies.
Adds dev-only endpoints under /dev (add permits and competencies, set fault knobs, read
back records) and fault knobs to fail, hang, slow down or reject requests. NOT a
production ledger.

    python -m firmware_sim.ledger --port 8600 --db /tmp/ledger.db [--key KEY.pem] [--token T]

In-process: ``led = ReferenceLedger(db); await led.start(); led.url; ...; await led.stop()``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .jcs import MAX_SAFE_INTEGER, canonical_json

__all__ = ["Faults", "ReferenceLedger", "canonical_json", "validate_permit", "validate_record"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    n INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order
    stream TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, received_utc TEXT NOT NULL,
    UNIQUE (stream, key)
);
CREATE TABLE IF NOT EXISTS permits (
    permit_id TEXT PRIMARY KEY, site TEXT NOT NULL, zone TEXT NOT NULL, signed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS competencies (person_id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""

CATEGORIES = ("gas", "fire", "electrical", "mechanical", "confined_space", "management")
LEVELS = ("general", "major")
PERMIT_EVENTS = (
    "activated", "ignition_released", "ignition_dropped", "suspended", "resumed", "closed", "expired", "warning",
)
# field -> (type check, required). Mirrors components.schemas in docs/ledger-api.yaml.
_Check = Callable[[Any], bool]
_str: _Check = lambda v: isinstance(v, str) and v != ""  # noqa: E731
_any_str: _Check = lambda v: isinstance(v, str)  # noqa: E731
_obj: _Check = lambda v: isinstance(v, dict)  # noqa: E731
# JSON Schema's "integer" includes 189.0: accept integral numbers, as the contract says.
_seq: _Check = lambda v: (  # noqa: E731
    isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 and float(v).is_integer()
)
_SPECS: dict[str, dict[str, tuple[_Check, bool]]] = {
    "hazards": {
        "id": (lambda v: _is_uuid(v), True), "gateway": (_str, True), "site": (_str, True), "zone": (_str, True),
        "category": (lambda v: v in CATEGORIES, True), "level": (lambda v: v in LEVELS, True),
        "recurring": (lambda v: isinstance(v, bool), True), "title": (_str, True),
        "evidence": (_obj, False), "utc": (lambda v: _is_utc(v), True), "seq": (_seq, True),
    },
    "permit-events": {
        "id": (lambda v: _is_uuid(v), True), "gateway": (_str, True), "site": (_str, True),
        "permit_id": (_str, True), "event": (lambda v: v in PERMIT_EVENTS, True), "reason": (_any_str, False),
        "zone": (_str, False), "utc": (lambda v: _is_utc(v), True), "seq": (_seq, True), "data": (_obj, False),
    },
}


def _is_uuid(v: Any) -> bool:
    try:
        return isinstance(v, str) and str(uuid.UUID(v)) == v.lower()
    except ValueError:
        return False


_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _is_utc(v: Any) -> bool:
    """RFC 3339 with an offset, as components.schemas.Utc says."""
    try:
        return isinstance(v, str) and bool(_UTC_RE.match(v)) and datetime.fromisoformat(v).tzinfo is not None
    except ValueError:
        return False


def validate_record(stream: str, body: Any) -> list[str]:
    """Problems with a hazard or permit-event body (empty when valid)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    spec = _SPECS[stream]
    problems = [f"{name}: required" for name, (_, req) in spec.items() if req and name not in body]
    problems += [f"{name}: invalid value {body[name]!r}" for name, (ok, _) in spec.items()
                 if name in body and not ok(body[name])]
    return problems


CANON = "jcs"
"""A permit's "canon": it is signed over its RFC 8785 canonical JSON."""
PERMIT_TYPES = ("hot_work", "confined_space")
PERMIT_STATES = ("draft", "submitted", "approved", "active", "suspended", "closed", "cancelled", "expired")
ROLES = ("operator", "entrant", "attendant", "fire_watch", "supervisor", "issuer")
_num: _Check = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
_time: _Check = lambda v: _num(v) or _is_utc(v)  # noqa: E731


def _opt(check: _Check) -> _Check:
    return lambda v: v is None or check(v)


def _enum(values: tuple[str, ...]) -> _Check:
    return lambda v: isinstance(v, str) and v in values


# Permit (sub)object specs: field -> (check, required). Mirrors components.schemas.Permit.
_PERSON = {"id": (_str, True), "role": (_enum(ROLES), True), "name": (_any_str, False)}
_GAS_TEST = {
    "at": (_time, True), "tester": (_any_str, True), "o2": (_num, True), "lel": (_num, True),
    "h2s": (_opt(_num), False), "co": (_opt(_num), False), "instrument": (_any_str, True),
    "bump_at": (_opt(_time), False), "cal_due": (_opt(_time), False),
}
_ISOLATION = {"tag": (_any_str, True), "point": (_any_str, False)}
_APPROVAL = {"signer": (_any_str, True), "role": (_enum(ROLES), True), "at": (_time, True),
             "signature": (_any_str, True)}
_CHANGE = {"from": (_enum(PERMIT_STATES), True), "to": (_enum(PERMIT_STATES), True), "at": (_time, True),
           "reason": (_any_str, False)}
_COMPETENCY = {"person": (_any_str, True), "certificate_id": (_any_str, True), "kind": (_any_str, True),
               "expires": (_time, True)}
_PERMIT_LISTS: dict[str, Callable[[Any, str], list[str]]] = {
    "people": lambda v, w: _fields(_PERSON, v, w),
    "gas_tests": lambda v, w: _fields(_GAS_TEST, v, w),
    "isolations": lambda v, w: [] if isinstance(v, str) else _fields(_ISOLATION, v, w),
    "approvals": lambda v, w: _fields(_APPROVAL, v, w),
    "linked_permits": lambda v, w: [] if isinstance(v, str) else [f"{w}: expected a permit id string"],
    "history": lambda v, w: _fields(_CHANGE, v, w),
    "competencies": lambda v, w: _fields(_COMPETENCY, v, w),
}
_PERMIT = {
    "permit_id": (_str, True),
    "revision": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SAFE_INTEGER, True),
    "canon": (lambda v: v == CANON, True),
    "type": (_enum(PERMIT_TYPES), True), "grade": (_any_str, False),
    "site_id": (_str, True), "zone_id": (_str, True), "state": (_enum(PERMIT_STATES), True),
    "valid_from": (_time, True), "valid_to": (_time, True),
    "max_entrants": (_opt(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), False),
}


def _fields(spec: Mapping[str, tuple[_Check, bool]], obj: Any, where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: expected an object"]
    problems = [f"{where}{name}: required" for name, (_, req) in spec.items() if req and name not in obj]
    return problems + [f"{where}{name}: invalid value {obj[name]!r}" for name, (ok, _) in spec.items()
                       if name in obj and not ok(obj[name])]


def validate_permit(body: Any) -> list[str]:
    """Problems with an unsigned permit body in the gateway's wire format (empty when valid).

    Stricter than the gateway's parser (drivers.ledger.permit_codec), never looser: what
    passes here parses there. Unknown fields are allowed (and signed).
    """
    problems = _fields(_PERMIT, body, "")
    if problems and problems[0] == ": expected an object":
        return ["body must be a JSON object"]
    for name, check in _PERMIT_LISTS.items():
        if name not in body:
            continue
        if not isinstance(body[name], list):
            problems.append(f"{name}: expected a list")
            continue
        for i, item in enumerate(body[name]):
            problems += check(item, f"{name}[{i}].")
    return [p.replace(".: ", ": ") for p in problems]


def _same_record(a: Any, b: Any) -> bool:
    """Idempotency: the same record is the same JSON with keys sorted (order and spacing aside)."""
    def form(v: Any) -> str:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    return form(a) == form(b)


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Faults:
    """Fault knobs, applied to /v1 requests in this order: slow, fail, reject, hang."""

    slow_s: float = 0.0
    """Delay every response by this long."""
    fail_next: int = 0
    """Answer the next N requests with fail_status, storing nothing."""
    fail_until: float = 0.0
    """time.monotonic() until which every request fails with fail_status."""
    fail_status: int = 500
    retry_after_s: float | None = None
    """Retry-After header sent with failures."""
    reject_next: int = 0
    """Answer the next N requests with reject_status (a 4xx), storing nothing."""
    reject_status: int = 422
    hang_next: int = 0
    """Hold the next N requests for hang_s (longer than the client's timeout)."""
    hang_s: float = 30.0
    hang_after_store: bool = True
    """True: store the record, then hang (the reply is lost: the client must resend).
    False: hang, then answer 503 without storing."""


class ReferenceLedger:
    """The reference ledger; binds host (127.0.0.1) on port (0 = any free one)."""

    def __init__(
        self,
        db: str | Path = ":memory:",
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        token: str | None = None,
        key_path: str | Path | None = None,
    ) -> None:
        self.port = port
        """The bound port once started (kept across stop/start, so clients can reconnect)."""
        self.host = host
        self.token = token
        self.faults = Faults()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        """(method, path, status) -> count, for tests."""
        self._key = _load_key(Path(key_path)) if key_path else Ed25519PrivateKey.generate()
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(db), check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte Ed25519 public key that verifies the permits' signatures."""
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes([
            web.post("/v1/hazards", self._post_hazard),
            web.post("/v1/permit-events", self._post_permit_event),
            web.get("/v1/permits", self._get_permits),
            web.get("/v1/people/{person}/competencies", self._get_competencies),
            web.post("/dev/permits", self._dev_permit),
            web.put("/dev/people/{person}/competencies", self._dev_competencies),
            web.post("/dev/faults", self._dev_faults),
            web.get("/dev/records/{stream}", self._dev_records),
            web.get("/dev/public-key", self._dev_public_key),
        ])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving (the data stays; start() again serves it on the same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def close(self) -> None:
        self._con.close()

    # ---- in-process helpers for tests and the demo ------------------------------------

    def fail_next(self, n: int, status: int = 500, retry_after_s: float | None = None) -> None:
        self.faults.fail_next, self.faults.fail_status, self.faults.retry_after_s = n, status, retry_after_s

    def fail_for(self, seconds: float, status: int = 500) -> None:
        self.faults.fail_until, self.faults.fail_status = time.monotonic() + seconds, status

    def reject_next(self, n: int, status: int = 422) -> None:
        self.faults.reject_next, self.faults.reject_status = n, status

    def hang_next(self, n: int, seconds: float, after_store: bool = True) -> None:
        self.faults.hang_next, self.faults.hang_s, self.faults.hang_after_store = n, seconds, after_store

    def clear_faults(self) -> None:
        self.faults = Faults()

    def records(self, stream: str) -> list[dict[str, Any]]:
        """Stored records of a stream in arrival order."""
        with self._lock:
            rows = self._con.execute("SELECT body FROM records WHERE stream=? ORDER BY n", (stream,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_permit(self, permit: Mapping[str, Any]) -> dict[str, Any]:
        """Add or replace a permit (the gateway's wire format, see `validate_permit`); return it signed.

        Like a real ledger, it raises the revision on every change: a body without "revision"
        gets the stored one + 1 (1 for a new permit); one with "revision" keeps it (tests of
        rolled-back or conflicting revisions). A body without "canon" gets "jcs": the form it
        is signed in. Raises ValueError naming every problem when the body breaks the Permit
        schema or has no RFC 8785 form (e.g. an integer beyond 2**53 - 1).
        """
        body = {k: v for k, v in permit.items() if k != "signature"}
        if "revision" not in body and isinstance(body.get("permit_id"), str):
            body["revision"] = self._revision(body["permit_id"]) + 1
        body.setdefault("canon", CANON)
        problems = validate_permit(body)
        if problems:
            raise ValueError("add_permit: " + "; ".join(problems))
        try:
            signed_bytes = canonical_json(body)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"add_permit: no RFC 8785 form: {exc}") from exc
        signed = body | {"signature": base64.b64encode(self._key.sign(signed_bytes)).decode()}
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO permits (permit_id, site, zone, signed) VALUES (?, ?, ?, ?)",
                (body["permit_id"], body["site_id"], body["zone_id"], json.dumps(signed, ensure_ascii=False)),
            )
        return signed

    def _revision(self, permit_id: str) -> int:
        with self._lock:
            row = self._con.execute("SELECT signed FROM permits WHERE permit_id=?", (permit_id,)).fetchone()
        rev = json.loads(row[0]).get("revision") if row else 0
        return rev if isinstance(rev, int) else 0

    def store_signed_permit(self, doc: Mapping[str, Any]) -> None:
        """Serve `doc` exactly as given, signature and all (e.g. a forgery, for the gateway's tests).

        Needs string permit_id, site_id and zone_id; nothing else is checked or signed.
        """
        for f in ("permit_id", "site_id", "zone_id"):
            if not isinstance(doc.get(f), str):
                raise ValueError(f"store_signed_permit: {f} must be a string")
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO permits (permit_id, site, zone, signed) VALUES (?, ?, ?, ?)",
                (doc["permit_id"], doc["site_id"], doc["zone_id"], json.dumps(dict(doc), ensure_ascii=False)),
            )

    def remove_permit(self, permit_id: str) -> bool:
        """Withdraw a permit from GET /v1/permits (a real ledger would serve it cancelled instead)."""
        with self._lock:
            cur = self._con.execute("DELETE FROM permits WHERE permit_id=?", (permit_id,))
        return cur.rowcount > 0

    def set_competencies(self, person: str, competencies: list[dict[str, Any]]) -> None:
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO competencies (person_id, body) VALUES (?, ?)",
                              (person, json.dumps(competencies)))

    # ---- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        resp: web.StreamResponse
        if request.path.startswith("/v1/"):
            resp = await self._v1(request, handler)
        else:
            resp = await handler(request)
        self.requests[(request.method, request.path, resp.status)] += 1
        return resp

    async def _v1(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        f = self.faults
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if f.slow_s:
            await asyncio.sleep(f.slow_s)
        if f.fail_next > 0 or time.monotonic() < f.fail_until:
            f.fail_next = max(0, f.fail_next - 1)
            headers = {"Retry-After": f"{f.retry_after_s:g}"} if f.retry_after_s is not None else None
            return _error(f.fail_status, "injected_failure", "fault knob: fail", headers)
        if f.reject_next > 0:
            f.reject_next -= 1
            return _error(f.reject_status, "injected_rejection", "fault knob: reject")
        if f.hang_next > 0:
            f.hang_next -= 1
            if not f.hang_after_store:
                await asyncio.sleep(f.hang_s)
                return _error(503, "injected_hang", "fault knob: hang, nothing stored")
            resp: web.StreamResponse = await handler(request)
            await asyncio.sleep(f.hang_s)
            return resp
        result: web.StreamResponse = await handler(request)
        return result

    async def _db(self, fn: Callable[..., _T], *args: Any) -> _T:
        def locked() -> _T:
            with self._lock:
                return fn(*args)
        return await asyncio.to_thread(locked)

    async def _post_hazard(self, request: web.Request) -> web.Response:
        return await self._post_record("hazards", request)

    async def _post_permit_event(self, request: web.Request) -> web.Response:
        return await self._post_record("permit-events", request)

    async def _post_record(self, stream: str, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if not _is_uuid(key):
            return _error(400, "bad_idempotency_key", "Idempotency-Key header must be a lowercase uuid")
        try:
            body = json.loads(await request.text())
        except ValueError:
            return _error(400, "bad_json", "body is not JSON")
        problems = validate_record(stream, body)
        if not problems and body["id"] != key:
            problems = ["id: must equal the Idempotency-Key header"]
        if problems:
            return _error(422, "invalid_record", "; ".join(problems))
        status, stored = await self._db(self._store, stream, key, body)
        if status == 409:
            return _error(409, "key_conflict", f"Idempotency-Key {key} was used with a different body")
        return web.json_response(stored, status=status)

    def _store(self, stream: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        row = self._con.execute("SELECT body, received_utc FROM records WHERE stream=? AND key=?",
                                (stream, key)).fetchone()
        if row is not None:
            old = json.loads(row[0])
            return (200 if _same_record(old, body) else 409), old | {"received_utc": row[1]}
        now = _utc()
        self._con.execute("INSERT INTO records (stream, key, body, received_utc) VALUES (?, ?, ?, ?)",
                          (stream, key, json.dumps(body), now))
        return 201, body | {"received_utc": now}

    async def _get_permits(self, request: web.Request) -> web.Response:
        site, zone = request.query.get("site", ""), request.query.get("zone")
        if not site:
            return _error(400, "missing_site", "query parameter site is required")
        if zone is not None and not zone:
            return _error(400, "empty_zone", "query parameter zone, when given, must not be empty")

        def query() -> list[Any]:
            return self._con.execute(
                "SELECT signed FROM permits WHERE site=? AND (?2 IS NULL OR zone=?2) ORDER BY permit_id",
                (site, zone),
            ).fetchall()

        rows = await self._db(query)
        doc = {"site": site, "zone": zone, "generated_utc": _utc(), "permits": [json.loads(r[0]) for r in rows]}
        return web.json_response(doc)

    async def _get_competencies(self, request: web.Request) -> web.Response:
        person = request.match_info["person"]

        def query() -> Any:
            return self._con.execute("SELECT body FROM competencies WHERE person_id=?", (person,)).fetchone()

        row = await self._db(query)
        if row is None:
            return _error(404, "unknown_person", f"no person {person!r} in the ledger")
        return web.json_response({"person_id": person, "competencies": json.loads(row[0]), "utc": _utc()})

    async def _dev_permit(self, request: web.Request) -> web.Response:
        try:
            signed = self.add_permit(await request.json())
        except (ValueError, AttributeError) as exc:
            return _error(422, "invalid_permit", str(exc))
        return web.json_response(signed, status=201)

    async def _dev_competencies(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, list):
            return _error(422, "invalid_competencies", "body must be a list of competency objects")
        self.set_competencies(request.match_info["person"], body)
        return web.json_response({"person_id": request.match_info["person"], "competencies": body})

    async def _dev_faults(self, request: web.Request) -> web.Response:
        """Body: any Faults fields, plus fail_for_s (seconds from now); {} clears all."""
        body = await request.json()
        fail_for = float(body.pop("fail_for_s", 0) or 0)
        try:
            self.faults = Faults(**body)
        except TypeError as exc:
            return _error(422, "invalid_faults", str(exc))
        if fail_for:
            self.fail_for(fail_for, self.faults.fail_status)
        return web.json_response({"ok": True})

    async def _dev_records(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.records, request.match_info["stream"]))

    async def _dev_public_key(self, request: web.Request) -> web.Response:
        return web.json_response({"alg": "Ed25519", "public_key": base64.b64encode(self.public_key).decode()})


def _error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def _load_key(path: Path) -> Ed25519PrivateKey:
    """Load the dev signing key, or create it (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


async def _serve(args: argparse.Namespace) -> None:
    ledger = ReferenceLedger(args.db, port=args.port, token=args.token, key_path=args.key)
    await ledger.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ledger listening on {ledger.url} public_key={base64.b64encode(ledger.public_key).decode()}",
          flush=True)
    try:
        await stop.wait()
    finally:
        await ledger.stop()
        ledger.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m firmware_sim.ledger", description="Reference central ledger (dev only)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    p.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    p.add_argument("--key", default=None, help="Ed25519 PEM signing key; created if missing (default: ephemeral)")
    p.add_argument("--token", default=None, help="require this bearer token on /v1")
    asyncio.run(_serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()

"""Login, sessions, CSRF and roles for the status page's write actions.

Reading the status page needs no login. Writing (acknowledge, silence, outbox retry) needs
a session of a high enough role and, on every POST, the session's CSRF token in the
`X-CSRF-Token` header. Every write attempt, allowed or refused, goes to the audit hook.

- Passwords: `hashlib.scrypt` with a random per-user salt, stored as
  ``scrypt$n$r$p$salt_b64$hash_b64``; compared in constant time. Make one with
  ``python -m gateway.status.auth`` (or `hash_password_main`).
- Sessions: 256-bit random tokens kept server-side (keyed by their SHA-256, so a memory
  dump shows no usable cookie) with an idle and an absolute expiry; the cookie is
  HttpOnly and SameSite=Strict (Secure when configured).
- Login is rate limited per remote address; a locked address gets 429 without the
  password being checked.

Everything time-dependent takes an injected monotonic clock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import getpass
import hashlib
import hmac
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from functools import wraps
from typing import IO, Any, Protocol

import structlog
from aiohttp import http_exceptions, web, web_protocol

log = structlog.get_logger("auth")

_BODY_ERRORS = (ValueError, web_protocol.RequestPayloadError, http_exceptions.HttpProcessingError)
"""Reading a request body can fail as bad JSON, or before that as a bad transfer or content encoding."""

__all__ = [
    "BODY",
    "CSRF_HEADER",
    "SESSION",
    "AuditHook",
    "Auth",
    "AuthError",
    "HashFormatError",
    "LoginLimiter",
    "Role",
    "Session",
    "SessionStore",
    "User",
    "UserConfigError",
    "add_security_headers",
    "hash_password",
    "hash_password_main",
    "load_users",
    "verify_password",
]

AuditHook = Callable[[str, str, str, str, bool, str], None]
"""audit(who, role, action, target, ok, utc): called for every write attempt, allowed or refused."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# scrypt cost: N=2**17, r=8, p=1 (OWASP Password Storage Cheat Sheet's floor for scrypt): 128 MiB
# and about 0.3 s here, off the event loop. Stored hashes carry their own parameters, so older
# ones (N=2**14) still verify and are upgraded at the next login (gateway/status/passwords.py);
# the bounds below stop a hostile config from asking for gigabytes.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MIN_PASSWORD = 12
"""`hash-password` refuses shorter passwords (NIST SP 800-63B asks >= 8; a shared plant-floor
account deserves a passphrase)."""
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
_SALT_BYTES, _KEY_BYTES = 16, 32
CSRF_HEADER = "X-CSRF-Token"
COOKIE = "gw_session"
_MAX_USER, _MAX_PASSWORD = 64, 1024


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str | Role) -> Role:
        if isinstance(name, Role):
            return name
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(f"role {name!r} unknown; use one of viewer, operator, admin") from None


class AuthError(Exception):
    """Base of this module's errors."""


class UserConfigError(AuthError, ValueError):
    """A users entry is wrong; `where` names it (e.g. ``status.users[1]``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class HashFormatError(UserConfigError):
    """A password hash is not ``scrypt$n$r$p$salt_b64$hash_b64`` with sane parameters."""


# ---- password hashing ------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * r * n + 2**20)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new ``scrypt$n$r$p$salt_b64$hash_b64`` string with a fresh random salt."""
    if not password:
        raise ValueError("hash_password: an empty password is not allowed")
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p, _KEY_BYTES))}"


@dataclass(frozen=True, slots=True)
class _Hash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _parse_hash(encoded: str, where: str = "password_hash") -> _Hash:
    parts = encoded.split("$")
    fix = "make one with `python -m gateway.status.auth`"
    if len(parts) != 6 or parts[0] != "scrypt":
        raise HashFormatError(where, f"not scrypt$n$r$p$salt_b64$hash_b64; {fix}")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise HashFormatError(where, f"n, r, p must be integers and salt/hash base64; {fix}") from None
    if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        raise HashFormatError(where, f"scrypt parameters n={n} r={r} p={p} out of range (n a power of 2 <= 2**20)")
    if len(salt) < 8 or len(key) < 16:
        raise HashFormatError(where, f"salt ({len(salt)} bytes) or hash ({len(key)} bytes) too short; {fix}")
    return _Hash(n, r, p, salt, key)


def parse_cost(encoded: str) -> int:
    """The scrypt N of a stored hash (raises HashFormatError for a malformed one)."""
    return _parse_hash(encoded).n


def weaker_than_current(encoded: str) -> bool:
    """A well-formed hash made at a lower cost than SCRYPT_N (upgraded at the next login)."""
    try:
        return parse_cost(encoded) < SCRYPT_N
    except HashFormatError:
        return False


def verify_password(password: str, encoded: str) -> bool:
    """True if `password` matches; constant-time comparison. A malformed hash never matches."""
    try:
        h = _parse_hash(encoded)
    except HashFormatError:
        return False
    return hmac.compare_digest(_scrypt(password, h.salt, h.n, h.r, h.p, len(h.key)), h.key)


def hash_password_main(argv: list[str] | None = None, stdin: IO[str] | None = None, out: IO[str] | None = None) -> int:
    """CLI for admins: print a password hash for the users list.

    ``python -m gateway.status.auth`` asks twice on the terminal; ``--stdin`` reads one line
    (for scripts). Exit 0 on success, 2 on a mismatch or an empty password.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if "--stdin" in args:
        pw = (stdin or sys.stdin).readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != pw:
            print("hash-password: the two passwords differ; nothing printed", file=sys.stderr)
            return 2
    if len(pw) < MIN_PASSWORD:
        print(f"hash-password: refused: a password needs at least {MIN_PASSWORD} characters and this one has "
              f"{len(pw)}; use a passphrase of several words", file=sys.stderr)  # fmt: skip
        return 2
    print(hash_password(pw), file=out)
    return 0


# ---- users -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """One account of the status page."""

    user: str
    """Login name."""
    role: Role
    """What this account may do."""
    password_hash: str
    """``scrypt$n$r$p$salt_b64$hash_b64``."""


def load_users(entries: Iterable[Mapping[str, Any]], where: str = "status.users") -> dict[str, User]:
    """Validate a list of ``{user, role, password_hash}``; errors name the entry and the fix."""
    users: dict[str, User] = {}
    for i, e in enumerate(entries):
        place = f"{where}[{i}]"
        if not isinstance(e, Mapping):
            raise UserConfigError(place, "must be a table {user, role, password_hash}")
        keys = set(e)
        if keys != {"user", "role", "password_hash"}:
            missing = sorted({"user", "role", "password_hash"} - keys)
            extra = sorted(keys - {"user", "role", "password_hash"})
            raise UserConfigError(place, f"keys must be user, role, password_hash (missing {missing}, unknown {extra})")
        name, role, pw_hash = e["user"], e["role"], e["password_hash"]
        if not isinstance(name, str) or not name or len(name) > _MAX_USER or not name.isprintable():
            raise UserConfigError(place, f"user must be a printable name of 1..{_MAX_USER} characters")
        place = f"{place} ({name})"
        if name in users:
            raise UserConfigError(place, f"duplicate user {name!r}; each login name once")
        try:
            r = Role.parse(role)
        except ValueError as exc:
            raise UserConfigError(place, str(exc)) from None
        if not isinstance(pw_hash, str):
            raise UserConfigError(place, "password_hash must be a string")
        _parse_hash(pw_hash, f"{place}.password_hash")
        users[name] = User(name, r, pw_hash)
    return users


# ---- sessions and rate limiting ----------------------------------------------------------


@dataclass(slots=True)
class Session:
    """A logged-in browser. Only the store holds it; the browser holds `token` in a cookie."""

    token: str
    csrf: str
    user: str
    role: Role
    created: float
    """Monotonic time of login (absolute expiry counts from here)."""
    last_seen: float
    """Monotonic time of the last request (idle expiry counts from here)."""


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Server-side sessions with idle and absolute expiry, bounded in number (oldest dropped)."""

    def __init__(
        self,
        idle_s: float = 900.0,
        absolute_s: float = 8 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 256,
    ) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.clock = clock
        self.max_sessions = max_sessions
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def create(self, user: str, role: Role) -> Session:
        now = self.clock()
        self._purge(now)
        while len(self._by_key) >= self.max_sessions:
            self._by_key.popitem(last=False)
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, role, now, now)
        self._by_key[_key(s.token)] = s
        return s

    def get(self, token: str | None) -> Session | None:
        """The live session for `token` (touched), or None if unknown or expired."""
        if not token:
            return None
        k = _key(token)
        s = self._by_key.get(k)
        if s is None:
            return None
        now = self.clock()
        if self._expired(s, now):
            del self._by_key[k]
            log.info("session_expired", user=s.user)
            return None
        s.last_seen = now
        return s

    def expires_in(self, s: Session) -> float:
        now = self.clock()
        return max(0.0, min(s.last_seen + self.idle_s, s.created + self.absolute_s) - now)

    def drop(self, token: str | None) -> bool:
        return bool(token) and self._by_key.pop(_key(token or ""), None) is not None

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.last_seen > self.idle_s or now - s.created > self.absolute_s

    def _purge(self, now: float) -> None:
        for k in [k for k, s in self._by_key.items() if self._expired(s, now)]:
            del self._by_key[k]


class LoginLimiter:
    """At most `max_failures` failed logins per key within `window_s`; then locked for `lockout_s`."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 4096,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self.max_keys = max_keys
        self._fails: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: dict[str, float] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0.0 when it may try now."""
        until = self._locked.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked[key]
            return 0.0
        return left

    def failure(self, key: str) -> None:
        now = self.clock()
        fails = [t for t in self._fails.pop(key, []) if now - t < self.window_s] + [now]
        if len(fails) >= self.max_failures:
            self._locked[key] = now + self.lockout_s
            log.warning("login_locked", remote=key, failures=len(fails), lockout_s=self.lockout_s)
            fails = []
        if fails:
            self._fails[key] = fails
        # Bounded memory under a spray of addresses: forget the oldest keys first.
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)


# ---- aiohttp: login, logout, session, and the guard for writes ----------------------------


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store", **headers})


def _cross_origin(request: web.Request) -> bool:
    """True when a browser says the request comes from another origin (defence beside SameSite)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin == "null"
    host = origin.split("://", 1)[-1]
    return host != request.host


def _target_of(body: Mapping[str, Any]) -> str:
    zone, target = body.get("zone"), body.get("target") or body.get("id")
    parts = [str(x) for x in (zone, target) if isinstance(x, str | int) and str(x)]
    return "/".join(parts) or "-"


SESSION = web.RequestKey("session", Session)
"""The checked session of a guarded write request."""
BODY = web.RequestKey("body", dict[str, Any])
"""The parsed JSON object of a guarded write request."""


class PasswordUpgrades(Protocol):
    """Where upgraded hashes are kept (gateway/status/passwords.py)."""

    def apply(self, users: Mapping[str, User]) -> dict[str, User]: ...
    def upgrade(self, config_hash: str, user: User, password: str) -> User: ...


class Auth:
    """Users, sessions, login rate limit and the write guard, for one aiohttp app."""

    def __init__(
        self,
        users: Mapping[str, User],
        *,
        audit: AuditHook | None = None,
        secure_cookie: bool = False,
        idle_s: float = 900.0,
        absolute_s: float = 8 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
        utc: Callable[[], str] = _utc_now,
        limiter: LoginLimiter | None = None,
        cookie_name: str = COOKIE,
        upgrades: PasswordUpgrades | None = None,
    ) -> None:
        """`upgrades`: where hashes weaker than SCRYPT_N are kept once upgraded at a login."""
        self._config_hashes = {name: u.password_hash for name, u in users.items()}
        self.upgrades = upgrades
        self.users = upgrades.apply(users) if upgrades is not None else dict(users)
        self.audit_hook = audit
        self.secure_cookie = secure_cookie
        self.clock = clock
        self.utc = utc
        self.cookie_name = cookie_name
        self.sessions = SessionStore(idle_s, absolute_s, clock)
        self.limiter = limiter or LoginLimiter(clock=clock)
        # Unknown users are checked against this, so that their answer takes as long as a real one.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))

    def routes(self) -> list[web.RouteDef]:
        """POST /api/login, POST /api/logout, GET /api/session."""
        return [
            web.post("/api/login", self.login),
            web.post("/api/logout", self.logout),
            web.get("/api/session", self.session),
        ]

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(self.cookie_name))

    def _audit(self, who: str, role: str, action: str, target: str, ok: bool) -> None:
        if self.audit_hook is not None:
            self.audit_hook(who, role, action, target, ok, self.utc())

    def _session_body(self, s: Session) -> dict[str, Any]:
        return {
            "user": s.user,
            "role": s.role.label,
            "csrf": s.csrf,
            "expires_in_s": round(self.sessions.expires_in(s), 1),
            "roles": [r.label for r in Role],
        }

    async def session(self, request: web.Request) -> web.Response:
        """Who is logged in (and the CSRF token for this page), or user null."""
        s = self.session_of(request)
        body = self._session_body(s) if s else {"user": None, "role": None, "roles": [r.label for r in Role]}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def login(self, request: web.Request) -> web.Response:
        remote = request.remote or "?"
        if _cross_origin(request):
            return _json_error(403, "cross-origin login refused")
        if request.content_type != "application/json":
            # A JSON body cannot be sent cross-site without a CORS preflight (which we never grant).
            return _json_error(415, "send the login as application/json")
        wait = self.limiter.retry_after(remote)
        if wait > 0:
            self._audit("-", "-", "login", remote, False)
            return _json_error(
                429, f"too many failed logins; try again in {int(wait) + 1} s", **{"Retry-After": str(int(wait) + 1)}
            )
        try:
            body = await request.json()
        except _BODY_ERRORS:
            return _json_error(400, "login body must be JSON {user, password}")
        name, pw = (body.get("user"), body.get("password")) if isinstance(body, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(pw, str) or len(name) > _MAX_USER or len(pw) > _MAX_PASSWORD:
            return _json_error(400, "login body must be JSON {user, password} (strings)")
        user = self.users.get(name)
        # scrypt costs ~50 ms of CPU: keep it off the event loop that serves the live page.
        match = await asyncio.to_thread(verify_password, pw, user.password_hash if user else self._dummy_hash)
        if user is None or not match:
            self.limiter.failure(remote)
            log.warning("login_failed", user=name, remote=remote)
            self._audit(name, "-", "login", remote, False)
            return _json_error(401, "wrong user or password")
        self.sessions.drop(request.cookies.get(self.cookie_name))  # no session fixation
        if self.upgrades is not None and weaker_than_current(user.password_hash):
            try:
                upgraded = await asyncio.to_thread(
                    self.upgrades.upgrade, self._config_hashes.get(user.user, user.password_hash), user, pw
                )
                self.users[user.user] = user = upgraded
            except OSError as exc:  # the login stands; the upgrade is tried again next time
                log.error("password_hash_upgrade_failed", user=user.user, error=str(exc))
        s = self.sessions.create(user.user, user.role)
        log.info("login", user=user.user, role=user.role.label, remote=remote)
        self._audit(user.user, user.role.label, "login", remote, True)
        resp = web.json_response(self._session_body(s), headers={"Cache-Control": "no-store"})
        resp.set_cookie(
            self.cookie_name, s.token, path="/", httponly=True, samesite="Strict", secure=self.secure_cookie or None
        )
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        s = self.session_of(request)
        if s is not None:
            if _cross_origin(request) or not self._csrf_ok(request, s):
                self._audit(s.user, s.role.label, "logout", "-", False)
                return _json_error(403, f"bad or missing {CSRF_HEADER}")
            self.sessions.drop(request.cookies.get(self.cookie_name))
            log.info("logout", user=s.user)
            self._audit(s.user, s.role.label, "logout", "-", True)
        resp = web.json_response({"user": None, "role": None}, headers={"Cache-Control": "no-store"})
        resp.del_cookie(self.cookie_name, path="/")
        return resp

    @staticmethod
    def _csrf_ok(request: web.Request, s: Session) -> bool:
        sent = request.headers.get(CSRF_HEADER, "")
        return hmac.compare_digest(sent.encode("utf-8", "replace"), s.csrf.encode("ascii"))

    def require(self, role: Role | str, action: str) -> Callable[[Handler], Handler]:
        """Guard a write handler: 401 without a session, 403 on a bad CSRF token or a lower role.

        The JSON body (an object, or {} when empty) is parsed once and left in
        ``request[BODY]``; the session in ``request[SESSION]``. The decision is audited
        before the handler runs: a write that cannot be recorded is not done.
        """
        need = Role.parse(role)

        def wrap(handler: Handler) -> Handler:
            @wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                body: Any = {}
                if request.can_read_body:
                    try:
                        body = await request.json()
                    except _BODY_ERRORS:
                        body = None  # a body that cannot be read (bad JSON, bad Content-Encoding) is no body
                target = _target_of(body) if isinstance(body, dict) else "-"
                s = self.session_of(request)
                who, has = (s.user, s.role.label) if s else ("-", "-")
                refusal: web.Response | None = None
                if s is None:
                    refusal = _json_error(401, f"log in as {need.label} or higher to {action}")
                elif _cross_origin(request) or not self._csrf_ok(request, s):
                    refusal = _json_error(403, f"bad or missing {CSRF_HEADER}; reload the page")
                elif s.role < need:
                    refusal = _json_error(403, f"{action} needs role {need.label}; {s.user} is {s.role.label}")
                elif not isinstance(body, dict):
                    refusal = _json_error(400, f"{action}: body must be a JSON object")
                if refusal is not None:
                    log.warning("write_refused", action=action, user=who, target=target, status=refusal.status)
                    self._audit(who, has, action, target, False)
                    return refusal
                if s is None:  # a missing session was refused above; never treat it as a login
                    return _json_error(401, f"{action}: log in first")
                try:
                    self._audit(s.user, s.role.label, action, target, True)
                except Exception as exc:  # the hook is the lead's audit log: any failure means "not recorded"
                    log.error("write_not_audited", action=action, user=s.user, target=target, error=repr(exc))
                    return _json_error(503, f"{action} not done: the audit log cannot record it")
                request[SESSION] = s
                request[BODY] = body
                return await handler(request)

            return guarded

        return wrap


def add_security_headers(app: web.Application) -> None:
    """Every response (the SSE stream included): no third-party anything, no framing, no sniffing."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")

    app.on_response_prepare.append(on_prepare)


if __name__ == "__main__":
    raise SystemExit(hash_password_main())

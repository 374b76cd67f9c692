"""gateway.status.auth: hashing, sessions, CSRF, roles, rate limit and audit, over a real aiohttp server
on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.status.auth import (
    BODY,
    CSRF_HEADER,
    SESSION,
    Auth,
    HashFormatError,
    LoginLimiter,
    Role,
    SessionStore,
    UserConfigError,
    add_security_headers,
    hash_password,
    hash_password_main,
    load_users,
    verify_password,
)
from tests.support.clock import FakeClock

# Cheap scrypt cost for tests only (the default n=2**17 is ~0.3 s per check).
FAST = {"n": 2**10, "r": 8, "p": 1}
PASSWORDS = {"vera": "viewer-pw", "otto": "operator-pw", "ada": "admin-pw"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    auth: Auth
    clock: FakeClock
    audit: list[tuple[str, str, str, str, bool, str]] = field(default_factory=list)
    writes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def login(self, user: str, password: str | None = None) -> str:
        r = await self.client.post("/api/login", json={"user": user, "password": password or PASSWORDS[user]})
        assert r.status == 200, await r.text()
        body = await r.json()
        return str(body["csrf"])


def _users() -> list[dict[str, str]]:
    return [{"user": u, "role": ROLES[u], "password_hash": hash_password(pw, **FAST)} for u, pw in PASSWORDS.items()]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock(mono=1000.0)
    audit: list[tuple[str, str, str, str, bool, str]] = []
    auth = Auth(
        load_users(_users()),
        audit=lambda *a: audit.append(a),
        clock=clock.monotonic,
        utc=lambda: "2026-01-01T00:00:00.000Z",
        idle_s=60.0,
        absolute_s=300.0,
        limiter=LoginLimiter(max_failures=3, window_s=60.0, lockout_s=120.0, clock=clock.monotonic),
    )
    app = web.Application()
    add_security_headers(app)
    app.add_routes(auth.routes())
    writes: list[tuple[str, str, dict[str, Any]]] = []

    def handler(action: str):  # type: ignore[no-untyped-def]
        async def h(request: web.Request) -> web.Response:
            writes.append((action, request[SESSION].user, request[BODY]))
            return web.json_response({"ok": True})

        return h

    app.router.add_post("/api/ack", auth.require("operator", "ack")(handler("ack")))
    app.router.add_post("/api/silence", auth.require(Role.OPERATOR, "silence")(handler("silence")))
    app.router.add_post("/api/outbox/retry", auth.require("admin", "outbox_retry")(handler("outbox_retry")))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Rig(client, auth, clock, audit, writes)
    finally:
        await client.close()


# ---- hashing ---------------------------------------------------------------------------


def test_hash_format_and_verify() -> None:
    h = hash_password("s3cret", **FAST)
    parts = h.split("$")
    assert parts[:4] == ["scrypt", "1024", "8", "1"] and len(parts) == 6
    assert verify_password("s3cret", h)
    assert not verify_password("s3cret ", h)
    assert not verify_password("", h)
    # A fresh salt every time: the same password never gives the same string.
    assert hash_password("s3cret", **FAST) != h


def test_default_cost_is_the_interactive_figure() -> None:
    h = hash_password("x")
    assert h.startswith("scrypt$131072$8$1$") and verify_password("x", h)  # OWASP's floor for scrypt: N=2**17


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "pbkdf2$1$2$3$AAAA$AAAA",
        "scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # n not a power of two
        "scrypt$16384$8$1$not-base64$AAAA",
        "scrypt$4194304$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # n too large (memory DoS)
        "scrypt$16384$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==",  # salt too short
    ],
)
def test_malformed_hash_never_matches_and_is_refused_in_config(bad: str) -> None:
    assert not verify_password("anything", bad)
    with pytest.raises(HashFormatError, match=r"status.users\[0\] \(u\).password_hash"):
        load_users([{"user": "u", "role": "viewer", "password_hash": bad}])


def test_hash_cli_reads_stdin_and_prints_a_verifiable_hash(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert hash_password_main(["--stdin"], stdin=io.StringIO("correct horse battery\n"), out=out) == 0
    printed = out.getvalue().strip()
    assert verify_password("correct horse battery", printed) and printed.startswith(f"scrypt${2**17}$8$1$")
    for short in ("", "hunter2", "abc", "elevenchars"):
        assert hash_password_main(["--stdin"], stdin=io.StringIO(short + "\n"), out=io.StringIO()) == 2
        err = capsys.readouterr().err
        assert f"at least 12 characters and this one has {len(short)}" in err, err


# ---- users and roles -----------------------------------------------------------------------


def test_role_ordering() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert [Role.parse(x) for x in ("viewer", "Operator", "ADMIN")] == [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    with pytest.raises(ValueError, match="use one of viewer, operator, admin"):
        Role.parse("boss")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"user": "a", "role": "boss", "password_hash": "x"}], r"users\[0\] \(a\): role 'boss' unknown"),
        ([{"user": "a", "role": "viewer"}], r"users\[0\]: keys must be .*missing \['password_hash'\]"),
        ([{"user": "", "role": "viewer", "password_hash": "x"}], r"users\[0\]: user must be"),
        ([{"user": "a", "role": "viewer", "password_hash": "x", "pw": "1"}], r"unknown \['pw'\]"),
    ],
)
def test_load_users_names_the_place(entries: list[dict[str, str]], message: str) -> None:
    with pytest.raises(UserConfigError, match=message):
        load_users(entries)


def test_load_users_refuses_duplicates() -> None:
    h = hash_password("x", **FAST)
    with pytest.raises(UserConfigError, match=r"users\[1\] \(a\): duplicate user 'a'"):
        load_users([{"user": "a", "role": "viewer", "password_hash": h}] * 2)
    users = load_users([{"user": "a", "role": "operator", "password_hash": h}])
    assert users["a"].role is Role.OPERATOR


# ---- pure stores with an injected clock -------------------------------------------------------


def test_session_idle_and_absolute_expiry() -> None:
    clock = FakeClock(mono=1000.0)
    store = SessionStore(idle_s=10.0, absolute_s=25.0, clock=clock.monotonic)
    s = store.create("otto", Role.OPERATOR)
    assert s.token != s.csrf and len(s.token) >= 43
    clock.advance(9.0)
    assert store.get(s.token) is s  # touched: idle counts again from here
    clock.advance(9.0)
    assert store.get(s.token) is s
    clock.advance(10.5)
    assert store.get(s.token) is None  # idle > 10 s
    s2 = store.create("otto", Role.OPERATOR)
    for _ in range(5):  # kept busy, yet the absolute limit still ends it
        clock.advance(5.0)
        assert store.get(s2.token) is s2
    clock.advance(5.1)
    assert store.get(s2.token) is None
    assert store.get("forged") is None and store.get(None) is None


def test_session_store_is_bounded() -> None:
    store = SessionStore(clock=FakeClock(mono=1000.0).monotonic, max_sessions=3)
    first = store.create("a", Role.VIEWER)
    for _ in range(3):
        store.create("b", Role.VIEWER)
    assert len(store) == 3 and store.get(first.token) is None


def test_limiter_locks_after_failures_and_unlocks_later() -> None:
    clock = FakeClock(mono=1000.0)
    lim = LoginLimiter(max_failures=3, window_s=60.0, lockout_s=120.0, clock=clock.monotonic)
    lim.failure("10.0.0.1")
    clock.advance(61.0)  # that one fell out of the window
    lim.failure("10.0.0.1")
    lim.failure("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == 0.0
    lim.failure("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == pytest.approx(120.0)
    assert lim.retry_after("10.0.0.2") == 0.0  # per address
    clock.advance(120.5)
    assert lim.retry_after("10.0.0.1") == 0.0


# ---- over HTTP -------------------------------------------------------------------------------


async def test_login_sets_a_strict_httponly_cookie_and_session_reports_it(rig: Rig) -> None:
    r = await rig.client.get("/api/session")
    assert (await r.json())["user"] is None
    r = await rig.client.post("/api/login", json={"user": "otto", "password": "operator-pw"})
    assert r.status == 200
    body = await r.json()
    assert (body["user"], body["role"]) == ("otto", "operator") and body["csrf"]
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie and "Path=/" in cookie
    assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    r = await rig.client.get("/api/session")
    s = await r.json()
    assert (s["user"], s["role"], s["csrf"]) == ("otto", "operator", body["csrf"])
    assert 0 < s["expires_in_s"] <= 60.0
    assert rig.audit == [("otto", "operator", "login", "127.0.0.1", True, "2026-01-01T00:00:00.000Z")]


async def test_secure_cookie_when_configured(rig: Rig) -> None:
    rig.auth.secure_cookie = True
    r = await rig.client.post("/api/login", json={"user": "otto", "password": "operator-pw"})
    assert "Secure" in r.headers["Set-Cookie"]


@pytest.mark.parametrize(("user", "password"), [("otto", "wrong"), ("nobody", "operator-pw"), ("otto", "")])
async def test_wrong_password_or_user_is_refused_alike(rig: Rig, user: str, password: str) -> None:
    r = await rig.client.post("/api/login", json={"user": user, "password": password})
    assert r.status == 401
    assert (await r.json()) == {"error": "wrong user or password"}
    assert "Set-Cookie" not in r.headers
    assert rig.audit[-1][2:5] == ("login", "127.0.0.1", False)


async def test_login_needs_json(rig: Rig) -> None:
    r = await rig.client.post("/api/login", data={"user": "otto", "password": "operator-pw"})
    assert r.status == 415
    r = await rig.client.post("/api/login", json=["otto"])
    assert r.status == 400


async def test_login_rate_limited_per_address(rig: Rig) -> None:
    for _ in range(3):
        r = await rig.client.post("/api/login", json={"user": "otto", "password": "guess"})
        assert r.status == 401
    # Locked: even the right password is not checked now.
    r = await rig.client.post("/api/login", json={"user": "otto", "password": "operator-pw"})
    assert r.status == 429 and int(r.headers["Retry-After"]) == 121
    rig.clock.advance(121.0)
    await rig.login("otto")


async def test_write_without_session_is_401_and_audited(rig: Rig) -> None:
    r = await rig.client.post("/api/ack", json={"zone": "tank-t101", "target": "*"})
    assert r.status == 401
    assert "log in as operator" in (await r.json())["error"]
    assert rig.writes == []
    assert rig.audit == [("-", "-", "ack", "tank-t101/*", False, "2026-01-01T00:00:00.000Z")]


@pytest.mark.parametrize("header", [None, "", "wrong-token"])
async def test_csrf_missing_or_wrong_is_403(rig: Rig, header: str | None) -> None:
    await rig.login("otto")
    headers = {} if header is None else {CSRF_HEADER: header}
    r = await rig.client.post("/api/silence", json={"zone": "bay-2"}, headers=headers)
    assert r.status == 403 and "CSRF" in (await r.json())["error"]
    assert rig.writes == []
    assert rig.audit[-1][:5] == ("otto", "operator", "silence", "bay-2", False)


async def test_csrf_of_another_session_is_refused(rig: Rig) -> None:
    other = await rig.login("ada")
    await rig.login("otto")  # the cookie jar now holds otto's session
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: other})
    assert r.status == 403 and rig.writes == []


async def test_cross_origin_post_is_refused_even_with_the_token(rig: Rig) -> None:
    csrf = await rig.login("otto")
    r = await rig.client.post(
        "/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf, "Origin": "http://evil.example"}
    )
    assert r.status == 403 and rig.writes == []


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        ("vera", "/api/ack", 403),
        ("vera", "/api/silence", 403),
        ("otto", "/api/ack", 200),
        ("otto", "/api/silence", 200),
        ("otto", "/api/outbox/retry", 403),
        ("ada", "/api/outbox/retry", 200),
        ("ada", "/api/ack", 200),
    ],
)
async def test_role_ordering_over_http(rig: Rig, user: str, path: str, status: int) -> None:
    csrf = await rig.login(user)
    r = await rig.client.post(path, json={"zone": "tank-t101", "target": "t101_o2"}, headers={CSRF_HEADER: csrf})
    assert r.status == status, await r.text()
    action = path.removeprefix("/api/").replace("/", "_")
    assert rig.audit[-1] == (user, ROLES[user], action, "tank-t101/t101_o2", status == 200, "2026-01-01T00:00:00.000Z")
    if status == 200:
        assert rig.writes == [(action, user, {"zone": "tank-t101", "target": "t101_o2"})]
    else:
        assert rig.writes == []
        assert "needs role" in (await r.json())["error"]


async def test_write_with_bad_json_is_400_after_auth(rig: Rig) -> None:
    csrf = await rig.login("otto")
    r = await rig.client.post("/api/ack", data=b"[1,2", headers={CSRF_HEADER: csrf, "Content-Type": "application/json"})
    assert r.status == 400 and rig.writes == []


async def test_session_expires_idle_then_writes_are_401(rig: Rig) -> None:
    csrf = await rig.login("otto")
    rig.clock.advance(59.0)
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
    assert r.status == 200
    rig.clock.advance(61.0)
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
    assert r.status == 401
    assert (await (await rig.client.get("/api/session")).json())["user"] is None


async def test_session_absolute_expiry_over_http(rig: Rig) -> None:
    csrf = await rig.login("otto")
    for _ in range(6):  # active every 50 s: idle never trips, the 300 s absolute limit does
        rig.clock.advance(50.0)
        r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
        assert r.status == 200
    rig.clock.advance(1.0)
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
    assert r.status == 401


async def test_logout_needs_csrf_then_ends_the_session(rig: Rig) -> None:
    csrf = await rig.login("otto")
    r = await rig.client.post("/api/logout")
    assert r.status == 403  # a forged cross-site logout does nothing
    r = await rig.client.post("/api/logout", headers={CSRF_HEADER: csrf})
    assert r.status == 200
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
    assert r.status == 401
    assert [a[2:5] for a in rig.audit] == [
        ("login", "127.0.0.1", True),
        ("logout", "-", False),
        ("logout", "-", True),
        ("ack", "z", False),
    ]


async def test_login_replaces_an_existing_session(rig: Rig) -> None:
    await rig.login("otto")
    old = next(c.value for c in rig.client.session.cookie_jar if c.key == "gw_session")
    await rig.login("ada")
    assert rig.auth.sessions.get(old) is None and len(rig.auth.sessions) == 1


async def test_audit_failure_blocks_the_write(rig: Rig) -> None:
    csrf = await rig.login("otto")

    def broken(*_: object) -> None:
        raise OSError("audit disk full")

    rig.auth.audit_hook = broken
    r = await rig.client.post("/api/ack", json={"zone": "z"}, headers={CSRF_HEADER: csrf})
    assert r.status == 503 and rig.writes == []

"""Browser-test support: Debian's Chromium through playwright, a real demo gateway, and a stub gateway.

- `chromium()`: playwright's sync API driving /usr/bin/chromium (never `playwright install`).
- `RequestLog`: every request a page makes, to prove nothing leaves 127.0.0.1.
- `demo_gateway()`: `edge-gateway demo` as a subprocess on free loopback ports, stopped by pid.
- `StubGateway`: a small aiohttp app (own thread and loop) that serves the real page and
  gateway.status.auth's routes over a snapshot the test controls: for login/ack flows before the
  daemon wires them, and for sections the daemon does not publish yet (presence, permits),
  plus GET /api/trends/{point} from test-controlled series (`trend_series`, `stub_condition`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.status.auth import BODY, SESSION, Auth, add_security_headers, hash_password, load_users
from tests.support.procs import free_port, stop_pid, wait_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = {"127.0.0.1"}
ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "gateway" / "status" / "static"


def have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium (playwright Browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class RequestLog:
    """Every URL a page asked for (attach with `watch`)."""

    urls: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("request", lambda req: self.urls.append(req.url))

    def foreign(self) -> list[str]:
        """Requests whose host is not 127.0.0.1 (data: URLs carry no host and stay in the page)."""
        return [u for u in self.urls if not u.startswith("data:") and urlsplit(u).hostname not in LOOPBACK]


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0 = no horizontal scroll)."""
    return int(
        page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


# ---- the real gateway ------------------------------------------------------------------------


@dataclass
class DemoGateway:
    proc: subprocess.Popen[bytes]
    http_port: int
    mqtt_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def stop(self) -> None:
        stop_pid(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _env() -> dict[str, str]:
    """This checkout first on the path: the page under test is this tree's, whatever `pip -e` points at."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "edge-gateway"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.app.cli"]


@contextmanager
def demo_gateway(tmp: Path, scenario: str = "o2-drop", duration: float = 90.0) -> Iterator[DemoGateway]:
    """`edge-gateway demo` on free loopback ports; stopped by its pid at the end."""
    http_port, mqtt_port = free_port(), free_port()
    log_path = tmp / f"demo-{http_port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                *_cli(),
                "demo",
                "--http-port",
                str(http_port),
                "--mqtt-port",
                str(mqtt_port),
                "--duration",
                str(duration),
                "--scenario",
                scenario,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=_env(),
        )
    gw = DemoGateway(proc, http_port, mqtt_port, log_path)
    try:
        wait_port(http_port, timeout=20.0)
        yield gw
    finally:
        gw.stop()


# ---- the stub gateway ---------------------------------------------------------------------------

STUB_PASSWORDS = {"vera": "viewer-pw", "otto": "operator-pw", "ada": "admin-pw"}
_STUB_ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}


STUB_UTC = "2026-01-01T08:00:00.000Z"
"""The stub snapshot's gateway time: trend windows end here."""


def stub_snapshot() -> dict[str, Any]:
    """A snapshot in the daemon's shape plus the sections still to come (presence, permits, outbox)."""

    def gas(sid: str, zone: str, q: str, unit: str, value: float, sev: str = "normal") -> dict[str, Any]:
        limits = {
            "o2": [
                ("low", 19.5, "low", "evacuate"),
                ("low_low", 18.0, "low", "evacuate"),
                ("high", 23.5, "high", "alarm"),
            ],
            "lel": [("alarm1", 10.0, "high", "alarm"), ("alarm2", 20.0, "high", "evacuate")],
        }[q]
        return {
            "id": sid, "zone": zone, "quantity": q, "unit": unit, "value": value, "quality": "good", "reason": "",
            "age_s": 0.3, "stale": False, "severity": sev,
            "limits": [{"name": n, "value": v, "direction": d, "severity": s} for n, v, d, s in limits],
        }  # fmt: skip

    return {
        "gateway": "gw-stub", "site": "stub-plant", "utc": STUB_UTC, "ready": True, "uptime_s": 12.0,
        "engine": {"steps": 10, "rejected_events": 0, "inbox": [0, 0]}, "output_fault": None,
        "zones": [
            {"id": "tank-t101", "name": "Tank T-101", "kind": "confined_space", "state": "evacuate",
             "severity": "evacuate", "silenced": False, "evacuate": True},
            {"id": "bay-2", "name": "Welding bay 2", "kind": "hot_work", "state": "normal", "severity": "normal",
             "silenced": False, "evacuate": False},
        ],
        "signals": [
            gas("t101_o2", "tank-t101", "o2", "%vol", 18.7, "evacuate"),
            gas("t101_lel", "tank-t101", "lel", "%LEL", 0.0),
            gas("bay2_o2", "bay-2", "o2", "%vol", 20.9),
            gas("bay2_lel", "bay-2", "lel", "%LEL", 0.4),
        ],
        "alarms": [{"zone": "tank-t101", "signal": "t101_o2", "severity": "evacuate",
                    "levels": {"low": {"active": True, "latched": True}}, "fault": None, "acked_by": None}],
        "outputs": [{"id": "t101_horn", "kind": "horn", "zone": "tank-t101", "commanded": True, "observed": True,
                     "safe": False}],
        "devices": [{"id": "gas-t101", "up": True, "comm_errors": 0, "polls": 40, "last_reason": ""}],
        "rejected": {},
        "connectivity": {"mqtt": {"connected": True, "pending": 0, "last_error": ""}},
        "presence": {"zones": [
            {"zone": "tank-t101", "inside": [{"person": "p-17", "name": "Li Wei", "role": "entrant", "since_s": 340},
                                             {"person": "p-22", "name": "Ana Ruiz", "role": "entrant", "since_s": 95}],
             "entries": 3, "exits": 1, "max": 2},
            {"zone": "bay-2", "inside": [{"person": "p-05", "name": "Sam Okafor", "role": "operator", "since_s": 800}],
             "entries": 1, "exits": 0},
        ]},
        "permits": [
            {"id": "HW-0042", "type": "hot_work", "zone": "bay-2", "state": "active", "released": False,
             "valid_to": "2026-01-01T09:30:00Z", "remaining_s": 5400,
             "people": [{"name": "Sam Okafor", "role": "operator"}, {"name": "Kim Lee", "role": "fire_watch"}],
             "checklist": [
                 {"condition": "gas_test_valid", "ok": True, "reason": "tested 08:12 by K. Lee, LEL 0.4 %LEL"},
                 {"condition": "lel_below_permissive", "ok": True, "reason": "bay2_lel 0.4 < 1 %LEL"},
                 {"condition": "operator_present", "ok": True, "reason": "Sam Okafor badge in bay-2 (-61 dBm)"},
                 {"condition": "face_verified", "ok": False, "reason": "no face match in the last 60 s"},
                 {"condition": "fire_watch_present", "ok": False, "reason": "Kim Lee badge not heard for 14 s"},
             ]},
        ],
        "outbox": {"depth": 3, "parked": 1, "last_error": "ledger 503"},
    }  # fmt: skip


ISO_GROUP2_RIGID = {"ab": 1.4, "bc": 2.8, "cd": 4.5, "group": 2, "foundation": "rigid"}
"""ISO 10816-3 boundaries in mm/s of a medium machine on a rigid foundation (rules.vibration table)."""


def trend_series(
    point: str,
    quantity: str,
    unit: str,
    means: Sequence[float | None],
    *,
    spread: float = 0.1,
    end_utc: str = STUB_UTC,
    iso: dict[str, Any] | None = None,
    limits: dict[str, float] | None = None,
) -> dict[str, Any]:
    """GET /api/trends/{point} as gateway.core.trends.TrendStore.series shapes it.

    `means` holds one value per minute, oldest first, the last one in the minute before
    `end_utc`; None leaves that minute out (a gap). min/max are mean -/+ `spread`.
    """
    end = datetime.strptime(end_utc[:16], "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    minutes = []
    for i, mean in enumerate(means):
        if mean is None:
            continue
        at = end - timedelta(minutes=len(means) - i)
        minutes.append(
            {
                "minute_utc": at.strftime("%Y-%m-%dT%H:%MZ"),
                "min": round(mean - spread, 4),
                "max": round(mean + spread, 4),
                "mean": round(mean, 4),
                "count": 60,
            }
        )
    body: dict[str, Any] = {"point": point, "quantity": quantity, "unit": unit, "minutes": minutes}
    if iso is not None:
        body["iso"] = dict(iso)
    if limits is not None:
        body["limits"] = dict(limits)
    return body


def stub_condition() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A "condition" snapshot section (gateway.core.trends.condition_json's shape) and its trends.

    Pump P-201 runs in ISO zone C since about 05:00 UTC (bearing wear), with a 2 h stop the
    night before; fan F-12 runs smoothly in zone A. Returns (section, {point: series}).
    """
    day = 24 * 60
    p201_vib: list[float | None] = []
    p201_temp: list[float | None] = []
    for i in range(day):
        stopped = 600 <= i < 720
        wear = 0.0 if i < day - 200 else min(1.5, (i - (day - 200)) / 60)
        vib = 1.7 + 0.25 * math.sin(i / 90) + wear
        p201_vib.append(None if stopped else vib)
        p201_temp.append(None if stopped else 62 + 6 * math.sin(i / 240) + 8 * wear)
    f12_vib = [0.9 + 0.1 * math.sin(i / 60) for i in range(day)]
    f12_temp = [45 + 3 * math.sin(i / 200) for i in range(day)]
    limits = {"alarm_c": 130.0, "trip_c": 155.0}
    trends = {
        "p201_vib": trend_series("p201_vib", "vibration", "mm/s", p201_vib, spread=0.3, iso=ISO_GROUP2_RIGID),
        "p201_temp": trend_series("p201_temp", "temperature", "degC", p201_temp, spread=0.5, limits=limits),
        "f12_vib": trend_series("f12_vib", "vibration", "mm/s", f12_vib, spread=0.15, iso=ISO_GROUP2_RIGID),
        "f12_temp": trend_series("f12_temp", "temperature", "degC", f12_temp, spread=0.4, limits=limits),
    }

    def machine(mid: str, zone: str, level: str, rms: float, iso_zone: str, temp: float) -> dict[str, Any]:
        return {
            "id": mid, "zone": zone, "level": level, "stopped": False, "rms_mm_s": rms, "temperature_c": temp,
            "baseline_mm_s": 1.7, "iso_zone": iso_zone,
            "conditions": [{"kind": "vibration_alert", "signal": f"{mid}_vib"}] if level != "normal" else [],
            "signals": {"vibration": f"{mid}_vib", "temperature": f"{mid}_temp", "stop_output": f"{mid}_stop"},
            "trend": {"vibration": f"/api/trends/{mid}_vib", "temperature": f"/api/trends/{mid}_temp"},
        }  # fmt: skip

    section = {
        "machines": [
            machine("p201", "pump-room", "alarm", 3.2, "C", 74.0),
            machine("f12", "pump-room", "normal", 0.95, "A", 46.1),
        ]
    }
    return section, trends


class StubGateway:
    """The real page and gateway.status.auth over a controlled snapshot, on 127.0.0.1 in its own thread.

    `trends` maps a point to the body of GET /api/trends/{point} (absent: 404);
    `trend_status` forces an HTTP status for a point (e.g. 503); `trend_hits` lists the
    points asked for, in order.
    """

    def __init__(self, snapshot: dict[str, Any] | None = None) -> None:
        self.snapshot = snapshot if snapshot is not None else stub_snapshot()
        self.audit: list[tuple[str, str, str, str, bool, str]] = []
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.trends: dict[str, dict[str, Any]] = {}
        self.trend_status: dict[str, int] = {}
        self.trend_hits: list[str] = []
        users = [
            {"user": u, "role": _STUB_ROLES[u], "password_hash": hash_password(pw, n=2**10)}
            for u, pw in STUB_PASSWORDS.items()
        ]
        self.auth = Auth(load_users(users), audit=lambda *a: self.audit.append(a))
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stub-gateway", daemon=True)
        self._runner: web.AppRunner | None = None
        self._cond: asyncio.Condition | None = None
        self._version = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> StubGateway:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def update(self, change: Any) -> None:
        """Apply `change(snapshot)` and push the new state to live streams."""
        with self._lock:
            change(self.snapshot)
        asyncio.run_coroutine_threadsafe(self._bump(), self._loop).result(timeout=5)

    async def _update_here(self, change: Any) -> None:
        """`update` from a handler (already on the stub's loop)."""
        with self._lock:
            change(self.snapshot)
        await self._bump()

    async def _bump(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._version += 1
            self._cond.notify_all()

    async def _start(self) -> None:
        self._cond = asyncio.Condition()
        app = web.Application()
        add_security_headers(app)
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/static/{name}", self._static),
                web.get("/api/state", self._state),
                web.get("/api/events", self._events),
                web.get("/api/trends/{point}", self._trend),
                *self.auth.routes(),
                web.post("/api/ack", self.auth.require("operator", "ack")(self._ack)),
                web.post("/api/silence", self.auth.require("operator", "silence")(self._silence)),
                web.post("/api/outbox/retry", self.auth.require("admin", "outbox_retry")(self._retry)),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(encoding="utf-8"), content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        ext = name[name.rfind(".") :] if "." in name else ""
        f = STATIC / name
        if ext not in types or "/" in name or not f.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=f.read_bytes(), content_type=types[ext])

    def _copy(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.snapshot)

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self._copy())

    async def _trend(self, request: web.Request) -> web.Response:
        point = request.match_info["point"]
        with self._lock:
            self.trend_hits.append(point)
            status = self.trend_status.get(point)
            body = copy.deepcopy(self.trends.get(point))
        if status is not None:
            return web.json_response({"error": f"stub: forced {status}"}, status=status)
        if body is None:
            raise web.HTTPNotFound(text="unknown trend point")
        return web.json_response(body)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        cond = self._cond
        assert cond is not None
        seen = -1
        while True:
            if self._version != seen:
                seen = self._version
                data = json.dumps(self._copy(), separators=(",", ":"))
                await resp.write(f"event: state\nid: {seen}\ndata: {data}\n\n".encode())
            try:
                async with asyncio.timeout(5.0), cond:
                    await cond.wait_for(lambda seen=seen: self._version != seen)  # type: ignore[misc]
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")

    def _record(self, request: web.Request, action: str) -> dict[str, Any]:
        body = request[BODY]
        self.writes.append((action, request[SESSION].user, body))
        return body

    async def _ack(self, request: web.Request) -> web.Response:
        body = self._record(request, "ack")
        user = request[SESSION].user

        def change(s: dict[str, Any]) -> None:
            for a in s["alarms"]:
                if a["zone"] == body.get("zone"):
                    a["acked_by"] = user

        await self._update_here(change)
        return web.json_response({"ok": True})

    async def _silence(self, request: web.Request) -> web.Response:
        body = self._record(request, "silence")

        def change(s: dict[str, Any]) -> None:
            for z in s["zones"]:
                if z["id"] == body.get("zone"):
                    z["silenced"] = True

        await self._update_here(change)
        return web.json_response({"ok": True})

    async def _retry(self, request: web.Request) -> web.Response:
        self._record(request, "outbox_retry")
        return web.json_response({"ok": True})

"""The local status server (aiohttp): page, JSON state, live stream, health.

Read-only. Writes (acknowledge, silence, retry) arrive with login and CSRF protection;
until then there is no write endpoint at all.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from drivers.face import face_routes
from gateway.app.snapshot import snapshot
from gateway.core.clock import iso
from gateway.status.auth import BODY, SESSION, Auth, add_security_headers, load_users
from rules.events import Ack, Silence

if TYPE_CHECKING:
    from gateway.app.daemon import Daemon

ENGINE_STALLED_S = 2.0
"""/healthz answers 503 when the engine loop has not ticked for this long (it ticks every
engine.tick_s, 0.1 s by default; systemd's WatchdogSec is 5 s)."""

log = structlog.get_logger("web")
STATIC = resources.files("gateway.status") / "static"


class StatusHub:
    """A version counter that live streams wait on (coalescing: readers see the latest state)."""

    def __init__(self) -> None:
        self.version = 0
        self._event: asyncio.Event | None = None

    def changed(self) -> None:
        self.version += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seen: int, wait_s: float) -> int:
        """The current version once it differs from `seen`, or after `wait_s`."""
        if self.version != seen:
            return self.version
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            async with asyncio.timeout(wait_s):
                await event.wait()
        except TimeoutError:
            pass
        return self.version


class StatusServer:
    def __init__(self, daemon: Daemon, bind: str, port: int) -> None:
        self.d = daemon
        self.bind = bind
        self.port = port
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/", self.index),
                web.get("/static/{name}", self.static),
                web.get("/api/state", self.state),
                web.get("/api/events", self.events),
                web.get("/api/trends/{point}", self.trend),
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._streams: set[asyncio.Task[object]] = set()
        self.app.on_shutdown.append(self._end_streams)
        add_security_headers(self.app)
        if daemon.face is not None and daemon.cfg.face.http:
            self.app.add_routes(face_routes(daemon.face))
        st = daemon.cfg.status
        self.auth: Auth | None = None
        if st.users:  # no users configured: no write API at all (the page says "read-only gateway")
            self.auth = Auth(
                load_users([u.model_dump() for u in st.users]),
                audit=self._audit,
                secure_cookie=st.secure_cookie,
                idle_s=st.session_idle_s,
                absolute_s=st.session_absolute_s,
                clock=daemon.clock.monotonic,
                utc=lambda: iso(daemon.clock.utc()),
            )
            self.app.add_routes(self.auth.routes())
            self.app.add_routes(
                [
                    web.post("/api/ack", self.auth.require("operator", "ack")(self.ack)),
                    web.post("/api/silence", self.auth.require("operator", "silence")(self.silence)),
                    web.post("/api/permits", self.auth.require("operator", "permit_submit")(self.permit_submit)),
                    web.post("/api/outbox/retry", self.auth.require("admin", "outbox_retry")(self.outbox_retry)),
                ]
            )

    async def start(self) -> None:
        """Bind the listener (at start, before "ready"): raises OSError when the address is taken."""
        # Live streams never end by themselves: close them on shutdown, and bound the wait for the rest.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port)
        await site.start()
        addrs = self._runner.addresses
        if addrs:
            self.bound_port = int(addrs[0][1])
        log.info("status_page_listening", url=f"http://{self.bind}:{self.bound_port or self.port}/")

    async def run(self) -> None:
        """Serve until cancelled (aiohttp serves from the listener `start` bound)."""
        if self._runner is None:
            await self.start()
        await asyncio.Event().wait()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _audit(self, who: str, role: str, action: str, target: str, ok: bool, utc: str) -> None:
        """Every write attempt, allowed or refused, goes to the audit chain (who, what, when)."""
        self.d.records.audit_line(
            "web_write", {"who": who, "role": role, "action": action, "target": target, "ok": ok, "utc": utc}
        )

    async def ack(self, request: web.Request) -> web.Response:
        body, sess = request[BODY], request[SESSION]
        zone, target = body.get("zone"), body.get("target", "*")
        if not isinstance(target, str) or not (zone is None or isinstance(zone, str)):
            return web.json_response({"error": "ack: zone and target must be strings"}, status=400)
        ecfg = self.d.ecfg
        if target == "outputs":
            if sess.role.label != "admin":
                return web.json_response({"error": "ack outputs: an output fault needs an admin"}, status=403)
            self.d.inbox.put(Ack("outputs", sess.user, sess.role.label, iso(self.d.clock.utc()), ""))
            return web.json_response({"queued": True}, status=202)
        if zone not in ecfg.zones:
            return web.json_response({"error": f"ack: unknown zone {zone!r}"}, status=400)
        if target != "*" and (target not in ecfg.signals or ecfg.signals[target].zone != zone):
            return web.json_response({"error": f"ack: {target!r} is not a signal of zone {zone}"}, status=400)
        self.d.inbox.put(Ack(target, sess.user, sess.role.label, iso(self.d.clock.utc()), zone))
        return web.json_response({"queued": True}, status=202)

    async def silence(self, request: web.Request) -> web.Response:
        zone = request[BODY].get("zone")
        if not isinstance(zone, str) or zone not in self.d.ecfg.zones:
            return web.json_response({"error": f"silence: unknown zone {zone!r}"}, status=400)
        self.d.inbox.put(Silence(zone, request[SESSION].user, iso(self.d.clock.utc())))
        return web.json_response({"queued": True}, status=202)

    async def permit_submit(self, request: web.Request) -> web.Response:
        """A signed permit handed in locally (e.g. from a tablet while the ledger is unreachable)."""
        verdict = self.d.permits.submit(dict(request[BODY]), f"api:{request[SESSION].user}")
        if isinstance(verdict, str):
            reason, detail = self.d.permits.last_refusal
            # A rolled-back or conflicting revision is a conflict with what the gateway holds.
            status = 409 if verdict.startswith(("revision_", "resume_")) else 422
            return web.json_response({"error": f"permit rejected: {verdict}", "reason": verdict,
                                      "detail": detail if reason == verdict else ""}, status=status)  # fmt: skip
        return web.json_response({"accepted": verdict.permit_id}, status=202)

    async def outbox_retry(self, request: web.Request) -> web.Response:
        rid, ob = request[BODY].get("id"), self.d.records.outbox
        if ob is None:
            return web.json_response({"error": "outbox retry: the outbox is not open"}, status=503)
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 1:
            return web.json_response({"error": "outbox retry: id must be a positive integer"}, status=400)
        if not await ob.retry(rid):
            return web.json_response({"error": f"outbox retry: no parked record {rid}"}, status=404)
        return web.json_response({"retried": rid}, status=202)

    async def _end_streams(self, app: web.Application) -> None:
        for t in list(self._streams):
            t.cancel()

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(encoding="utf-8"), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        ext = name[name.rfind(".") :] if "." in name else ""
        f = STATIC / name
        if ext not in types or "/" in name or not f.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=f.read_bytes(), content_type=types[ext])

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(snapshot(self.d))

    async def metrics(self, request: web.Request) -> web.Response:
        from gateway.app.metrics import render

        return web.Response(
            body=render(self.d).encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def trend(self, request: web.Request) -> web.Response:
        """24 h of minute min/max/mean of one machine point, with ISO bands or temperature limits."""
        try:
            return web.json_response(self.d.trends.series(request.match_info["point"]))
        except KeyError:
            raise web.HTTPNotFound(text="unknown trend point") from None

    async def healthz(self, request: web.Request) -> web.Response:
        starved = dict(self.d.outputs.starved)
        age = self.d.engine_age_s()
        # A hung engine with a live event loop still answers HTTP: say it is not healthy.
        engine_ok = age is not None and age <= ENGINE_STALLED_S
        ok = self.d.ready and engine_ok and not self.d.state.output_fault and not starved
        body = {"ok": ok, "ready": self.d.ready, "engine_age_s": None if age is None else round(age, 3),
                "output_fault": self.d.state.output_fault or None, "modules_starved": starved}  # fmt: skip
        return web.json_response(body, status=200 if ok else 503)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the whole state on every change (at most 10 per second), keep-alive every 5 s."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        me = asyncio.current_task()
        assert me is not None
        self._streams.add(me)
        try:
            await self._stream(resp)
        finally:
            self._streams.discard(me)
        return resp

    async def _stream(self, resp: web.StreamResponse) -> None:
        seen = -1
        while True:
            version = await self.d.hub.wait(seen, 5.0)
            if version == seen:
                await resp.write(b": keep-alive\n\n")
                continue
            seen = version
            data = json.dumps(snapshot(self.d), separators=(",", ":"))
            await resp.write(f"event: state\nid: {version}\ndata: {data}\n\n".encode())
            await asyncio.sleep(0.1)

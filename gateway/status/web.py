"""The local status server (aiohttp): page, JSON state, live stream, health.

Read-only. Writes (acknowledge, silence, retry) arrive with login and CSRF protection;
until then there is no write endpoint at all.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import structlog
from aiohttp import web

from drivers.face import face_routes
from gateway.status.auth import BODY, SESSION, Auth, add_security_headers, load_users
from gateway.status.passwords import StateDirUpgrades
from gateway.status.view import GatewayView
from rules.events import Ack, Silence

log = structlog.get_logger("web")
STATIC = resources.files("gateway.status") / "static"


class StatusServer:
    def __init__(self, view: GatewayView, bind: str, port: int) -> None:
        self.v = view
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
        if view.face is not None:
            self.app.add_routes(face_routes(view.face))
        st = view.status
        self.auth: Auth | None = None
        if st.users:  # no users configured: no write API at all (the page says "read-only gateway")
            self.auth = Auth(
                load_users([u.model_dump() for u in st.users]),
                audit=self._audit,
                secure_cookie=st.secure_cookie,
                idle_s=st.session_idle_s,
                absolute_s=st.session_absolute_s,
                clock=view.monotonic,
                utc=view.utc,
                upgrades=StateDirUpgrades(view.state_dir / "password-upgrades.json") if view.state_dir else None,
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
        self.v.audit(
            "web_write", {"who": who, "role": role, "action": action, "target": target, "ok": ok, "utc": utc}
        )

    async def ack(self, request: web.Request) -> web.Response:
        body, sess = request[BODY], request[SESSION]
        zone, target = body.get("zone"), body.get("target", "*")
        if not isinstance(target, str) or not (zone is None or isinstance(zone, str)):
            return web.json_response({"error": "ack: zone and target must be strings"}, status=400)
        if target == "outputs":
            if sess.role.label != "admin":
                return web.json_response({"error": "ack outputs: an output fault needs an admin"}, status=403)
            self.v.submit(Ack("outputs", sess.user, sess.role.label, self.v.utc(), ""))
            return web.json_response({"queued": True}, status=202)
        if zone not in self.v.zones():
            return web.json_response({"error": f"ack: unknown zone {zone!r}"}, status=400)
        if target != "*" and self.v.zone_of_signals().get(target) != zone:
            return web.json_response({"error": f"ack: {target!r} is not a signal of zone {zone}"}, status=400)
        self.v.submit(Ack(target, sess.user, sess.role.label, self.v.utc(), zone))
        return web.json_response({"queued": True}, status=202)

    async def silence(self, request: web.Request) -> web.Response:
        zone = request[BODY].get("zone")
        if not isinstance(zone, str) or zone not in self.v.zones():
            return web.json_response({"error": f"silence: unknown zone {zone!r}"}, status=400)
        self.v.submit(Silence(zone, request[SESSION].user, self.v.utc()))
        return web.json_response({"queued": True}, status=202)

    async def permit_submit(self, request: web.Request) -> web.Response:
        """A signed permit handed in locally (e.g. from a tablet while the ledger is unreachable)."""
        verdict = self.v.submit_permit(dict(request[BODY]), f"api:{request[SESSION].user}")
        if verdict.accepted is None:
            # A rolled-back or conflicting revision is a conflict with what the gateway holds.
            status = 409 if verdict.reason.startswith(("revision_", "resume_")) else 422
            return web.json_response({"error": f"permit rejected: {verdict.reason}", "reason": verdict.reason,
                                      "detail": verdict.detail}, status=status)  # fmt: skip
        return web.json_response({"accepted": verdict.accepted}, status=202)

    async def outbox_retry(self, request: web.Request) -> web.Response:
        rid = request[BODY].get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 1:
            return web.json_response({"error": "outbox retry: id must be a positive integer"}, status=400)
        done = await self.v.outbox_retry(rid)
        if done is None:
            return web.json_response({"error": "outbox retry: the outbox is not open"}, status=503)
        if not done:
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
        return web.json_response(self.v.snapshot())

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.v.metrics().encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def trend(self, request: web.Request) -> web.Response:
        """24 h of minute min/max/mean of one machine point, with ISO bands or temperature limits."""
        try:
            return web.json_response(self.v.trend(request.match_info["point"]))
        except KeyError:
            raise web.HTTPNotFound(text="unknown trend point") from None

    async def healthz(self, request: web.Request) -> web.Response:
        ok, body = self.v.health()
        return web.json_response(body, status=200 if ok else 503)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the whole state on every change (at most 10 per second), keep-alive every 5 s."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        me = asyncio.current_task()
        if me is not None:
            self._streams.add(me)
        try:
            await self._stream(resp)
        finally:
            self._streams.discard(me)
        return resp

    async def _stream(self, resp: web.StreamResponse) -> None:
        seen = -1
        while True:
            version = await self.v.hub.wait(seen, 5.0)
            if version == seen:
                await resp.write(b": keep-alive\n\n")
                continue
            seen = version
            data = json.dumps(self.v.snapshot(), separators=(",", ":"))
            await resp.write(f"event: state\nid: {version}\ndata: {data}\n\n".encode())
            await asyncio.sleep(0.1)

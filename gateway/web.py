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

from gateway.snapshot import snapshot

if TYPE_CHECKING:
    from gateway.daemon import Daemon

log = structlog.get_logger("web")
STATIC = resources.files("gateway") / "static"


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
                web.get("/healthz", self.healthz),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._streams: set[asyncio.Task[object]] = set()
        self.app.on_shutdown.append(self._end_streams)

    async def run(self) -> None:
        # Live streams never end by themselves: close them on shutdown, and bound the wait for the rest.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port)
        await site.start()
        addrs = self._runner.addresses
        if addrs:
            self.bound_port = int(addrs[0][1])
        log.info("status_page_listening", url=f"http://{self.bind}:{self.bound_port or self.port}/")
        await asyncio.Event().wait()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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

    async def healthz(self, request: web.Request) -> web.Response:
        ok = self.d.ready and not self.d.state.output_fault
        body = {"ok": ok, "ready": self.d.ready, "output_fault": self.d.state.output_fault or None}
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

"""The status server sees a narrow view, never the daemon (issue 16.1): the real server runs on
any object with GatewayView's members. The page itself is tested through a real daemon
(tests/test_status_page.py); this checks only the server's own mapping of view to HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.config.models import Status
from gateway.status.view import StatusHub
from gateway.status.web import StatusServer
from rules.events import Event
from tests.support.procs import free_port


class MinimalView:
    def __init__(self) -> None:
        self.hub = StatusHub()
        self.status = Status()
        self.face = None
        self.state_dir = None
        self.ok = True
        self.events: list[Event] = []

    def snapshot(self) -> dict[str, Any]:
        return {"ready": self.ok}

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"ok": self.ok}

    def metrics(self) -> str:
        return "edge_up 1\n"

    def trend(self, point: str) -> Any:
        return None

    def zone_of_signals(self) -> Mapping[str, str]:
        return {}

    def zones(self) -> frozenset[str]:
        return frozenset()

    def submit(self, ev: Event) -> None:
        self.events.append(ev)

    def submit_permit(self, doc: dict[str, Any], source: str) -> Any:
        raise AssertionError("no write API without users")

    async def outbox_retry(self, rid: int) -> bool | None:
        return None

    def audit(self, kind: str, body: dict[str, Any]) -> None:
        pass

    def utc(self) -> str:
        return "2026-12-05T00:00:00Z"

    def monotonic(self) -> float:
        return 0.0


async def test_the_real_server_runs_on_a_view_and_maps_health_to_status_codes() -> None:
    view = MinimalView()
    port = free_port()
    server = StatusServer(view, "127.0.0.1", port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and await r.json() == {"ok": True}
            view.ok = False
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 503
            async with http.get(f"http://127.0.0.1:{port}/api/state") as r:
                assert await r.json() == {"ready": False}
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert (await r.text()) == "edge_up 1\n"
            async with http.post(f"http://127.0.0.1:{port}/api/ack", json={}) as r:
                assert r.status in (404, 405)  # no users configured: no write API at all
        assert view.events == []
    finally:
        await server.close()

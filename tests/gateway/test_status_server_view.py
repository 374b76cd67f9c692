"""The status server sees a narrow view, never the daemon (issue 16.1): the real server runs on
any object with GatewayView's members. The page itself is tested through a real daemon
(tests/browser/test_status_page.py); this checks only the server's own mapping of view to HTTP."""

from __future__ import annotations

import aiohttp

from gateway.status.web import StatusServer
from tests.support.procs import free_port
from tests.support.statusview import MinimalView


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

"""A stand-in for the daemon's GatewayView, for tests of the status server alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.models import Status
from gateway.status.view import StatusHub
from rules.events import Event


class MinimalView:
    """GatewayView's members with nothing behind them: healthy until `ok` is set False, no users
    (so no write API), and every submitted event kept in `events`."""

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

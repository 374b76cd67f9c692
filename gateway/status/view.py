"""What the status server may see of the gateway and ask of it: a narrow view, never the daemon.

`gateway.app.view.DaemonView` implements it over the running daemon; a test can hand the real
`StatusServer` any object with these members.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rules.events import Event

if TYPE_CHECKING:
    from drivers.face import FaceGate
    from gateway.config.models import Status


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


class PermitVerdict(Protocol):
    accepted: str | None
    """The permit id when accepted."""
    reason: str
    detail: str


class GatewayView(Protocol):
    hub: StatusHub
    """Changes to the state (the live stream waits on it)."""
    status: Status
    """The [status] settings: users, cookies, sessions."""
    face: FaceGate | None
    """The face-event endpoint's gate when face terminals post over HTTP, else None."""
    state_dir: Path | None
    """Where the server may keep its own state (upgraded password hashes); None: nowhere."""

    def snapshot(self) -> dict[str, Any]: ...
    def health(self) -> tuple[bool, dict[str, Any]]: ...
    def metrics(self) -> str: ...
    def trend(self, point: str) -> Any: ...
    def zone_of_signals(self) -> Mapping[str, str]:
        """Signal id -> its zone (for validating acknowledgements)."""
        ...

    def zones(self) -> frozenset[str]: ...
    def submit(self, ev: Event) -> None:
        """An operator's event (acknowledgement, silence) for the engine."""
        ...

    def submit_permit(self, doc: dict[str, Any], source: str) -> PermitVerdict: ...
    async def outbox_retry(self, rid: int) -> bool | None:
        """True: queued again; False: no such parked record; None: the outbox is not open."""
        ...

    def audit(self, kind: str, body: dict[str, Any]) -> None: ...
    def utc(self) -> str: ...
    def monotonic(self) -> float: ...


__all__ = ["GatewayView", "PermitVerdict", "StatusHub"]

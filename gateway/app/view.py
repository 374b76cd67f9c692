"""The daemon as the status server sees it (gateway.status.view.GatewayView)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.app.metrics import render
from gateway.app.snapshot import snapshot
from gateway.core.clock import iso
from rules.events import Event

if TYPE_CHECKING:
    from drivers.face import FaceGate
    from gateway.app.parts import Parts
    from gateway.config.models import Status
    from gateway.status.view import StatusHub

ENGINE_STALLED_S = 2.0
"""/healthz answers 503 when the engine loop has not ticked for this long (it ticks every
engine.tick_s, 0.1 s by default; systemd's WatchdogSec is 5 s)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: str | None
    reason: str = ""
    detail: str = ""


class DaemonView:
    def __init__(self, d: Parts) -> None:
        self._d = d
        self.hub: StatusHub = d.hub

    @property
    def state_dir(self) -> Path:
        return self._d.state_dir

    @property
    def status(self) -> Status:
        return self._d.cfg.status

    @property
    def face(self) -> FaceGate | None:
        return self._d.face if self._d.cfg.face.http else None

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self._d)

    def health(self) -> tuple[bool, dict[str, Any]]:
        d = self._d
        starved = dict(d.outputs.starved)
        age = d.engine_age_s()
        # A hung engine with a live event loop still answers HTTP: say it is not healthy.
        engine_ok = age is not None and age <= ENGINE_STALLED_S
        ok = d.ready and engine_ok and not d.state.output_fault and not starved
        return ok, {"ok": ok, "ready": d.ready, "engine_age_s": None if age is None else round(age, 3),
                    "output_fault": d.state.output_fault or None, "modules_starved": starved}  # fmt: skip

    def metrics(self) -> str:
        return render(self._d)

    def trend(self, point: str) -> Any:
        return self._d.trends.series(point)

    def zone_of_signals(self) -> Mapping[str, str]:
        return {sid: s.zone for sid, s in self._d.ecfg.signals.items()}

    def zones(self) -> frozenset[str]:
        return frozenset(self._d.ecfg.zones)

    def submit(self, ev: Event) -> None:
        self._d.inbox.put(ev)

    def submit_permit(self, doc: dict[str, Any], source: str) -> Verdict:
        permits = self._d.permits
        verdict = permits.submit(doc, source)
        if isinstance(verdict, str):
            reason, detail = permits.last_refusal
            return Verdict(None, verdict, detail if reason == verdict else "")
        return Verdict(verdict.permit_id)

    async def outbox_retry(self, rid: int) -> bool | None:
        ob = self._d.records.outbox
        return None if ob is None else await ob.retry(rid)

    def audit(self, kind: str, body: dict[str, Any]) -> None:
        self._d.records.audit_line(kind, body)

    def utc(self) -> str:
        return iso(self._d.clock.utc())

    def monotonic(self) -> float:
        return self._d.clock.monotonic()

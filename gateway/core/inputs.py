"""The daemon's people-and-permit inputs: BLE receivers, face-ID terminals, signed permits.

Everything here turns outside input into engine events or into a counted, named rejection;
nothing outside can open an interlock except through the pure rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from drivers.ble.source import BleSource
from drivers.face import FaceGate, FaceMqttSource, FaceVerifier, SeqStore, TerminalCfg, VerifierCfg, load_terminal_key
from drivers.ledger.keys import load_ledger_public_key
from drivers.ledger.permit_codec import canonical_json, permit_to_body, verify_permit
from gateway.config import GatewayConfig
from gateway.config.loader import resolve_path
from gateway.core import statefile
from gateway.core.clock import Clock
from rules.config import EngineCfg
from rules.events import Event, PermitUpdate, Rejected
from rules.permit import Permit, PermitState
from rules.revision import Refused, RevisionMark, admit

log = structlog.get_logger("inputs")


class _FaceClock:
    def __init__(self, clock: Clock) -> None:
        self._c = clock

    def now_utc(self) -> datetime:
        return self._c.utc()

    def now_mono(self) -> float:
        return self._c.monotonic()


def ble_sources(cfg: GatewayConfig, emit: Callable[[Event], None], clock: Clock) -> list[BleSource]:
    return [
        BleSource(emit, receiver=r.id, adapter=r.adapter, clock=clock.monotonic)
        for r in cfg.receivers
        if r.kind == "bluez"
    ]


def face_gate(
    cfg: GatewayConfig, base: Path, state_dir: Path, emit: Callable[[Event], None], clock: Clock
) -> FaceGate | None:
    if not cfg.face_terminals:
        return None
    terminals = {
        t.id: TerminalCfg(t.id, t.zone, t.alg, load_terminal_key(resolve_path(base, t.key_file), t.alg))
        for t in cfg.face_terminals
    }
    store = SeqStore(state_dir / "face-seq.json")
    verifier = FaceVerifier(VerifierCfg(terminals, max_skew_s=cfg.face.max_skew_s)).with_last_seq(store.load())
    return FaceGate(verifier, emit, clock=_FaceClock(clock), store=store)


def face_mqtt(cfg: GatewayConfig, gate: FaceGate | None, base: Path = Path(".")) -> FaceMqttSource | None:
    if gate is None or not cfg.face.mqtt_topics:
        return None
    from gateway.northbound.mqtt_out import broker_password, broker_tls

    return FaceMqttSource(
        gate,
        cfg.mqtt.url,
        cfg.face.mqtt_topics,
        client_id=f"{cfg.site.gateway_id}-face",
        username=cfg.mqtt.username or None,
        password=broker_password(cfg.mqtt, base),
        tls_context=broker_tls(cfg.mqtt, base),
    )


class RevisionStore:
    """The highest accepted revision per permit id (rules/revision.py), in the state directory.

    Written atomically on every change (permits change a few times a shift). Unreadable or
    missing: logged, and rebuilt from the permits the offline cache submits again at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marks: dict[str, RevisionMark] = {}
        raw = statefile.read(path) or {}
        for pid, m in raw.items():
            try:
                self.marks[pid] = RevisionMark(int(m["revision"]), str(m["digest"]), PermitState(m["state"]),
                                               None if m.get("suspended_utc") is None else float(m["suspended_utc"]))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("permit_revision_unreadable", path=str(path), permit=pid, error=repr(exc))

    def put(self, pid: str, mark: RevisionMark) -> None:
        self.marks[pid] = mark
        try:
            statefile.write(self.path, {k: {"revision": m.revision, "digest": m.digest, "state": m.state.value,
                                            "suspended_utc": m.suspended_utc} for k, m in self.marks.items()})
        except OSError as exc:  # kept in memory: still refused until restart, and the cache rebuilds it
            log.error("permit_revision_write_failed", path=str(self.path), error=str(exc), fix="check the disk")


def permit_digest(permit: Permit) -> str:
    """Identity of a permit's content: SHA-256 of its canonical wire body (revision included)."""
    return hashlib.sha256(canonical_json(permit_to_body(permit))).hexdigest()


class PermitLoader:
    """Verifies signed permits (Ed25519 by the ledger), refuses rolled-back revisions, and hands
    the good ones to the engine. Every path a permit arrives by (ledger sync, offline cache,
    local API, permits folder) goes through `submit`."""

    def __init__(
        self,
        cfg: GatewayConfig,
        ecfg: EngineCfg,
        base: Path,
        emit: Callable[[Event], None],
        clock: Clock,
        revisions: RevisionStore | None = None,
    ):
        self.cfg = cfg
        self.revisions = revisions or RevisionStore(resolve_path(base, cfg.state.dir) / "permit-revisions.json")
        self.last_refusal: tuple[str, str] = ("", "")
        """(reason, detail) of the last refused document, for the local API's answer."""
        self.zones = {z.id: z.kind for z in ecfg.zones.values()}
        self.base = base
        self.emit = emit
        self.clock = clock
        self.key = (
            load_ledger_public_key(resolve_path(base, cfg.ledger.public_key_file))
            if cfg.ledger.public_key_file
            else None
        )
        self.accepted = 0
        self.rejected = 0

    def submit(self, doc: bytes | str | dict[str, Any], source: str) -> Permit | str:
        """Verify one permit document; the permit, or the rejection reason (counted and sent to the engine)."""
        if self.key is None:
            return self._reject(source, "no_key", "ledger.public_key_file is not configured")
        now_utc = self.clock.utc().timestamp()
        verdict = verify_permit(doc, self.key, self.cfg.site.id, self.zones, now_utc)
        if isinstance(verdict, Permit):
            pid = verdict.permit_id
            mark = self.revisions.marks.get(pid)
            admitted = admit(mark, verdict, permit_digest(verdict), now_utc)
            if isinstance(admitted, Refused):
                return self._reject(source, admitted.reason.value, admitted.detail)
            if admitted != mark:
                self.revisions.put(pid, admitted)
            self.accepted += 1
            offset = self.clock.utc().timestamp() - self.clock.monotonic()
            self.emit(PermitUpdate(verdict, offset))
            log.info("permit_accepted", permit=pid, revision=verdict.revision, zone=verdict.zone_id,
                     state=verdict.state.value, source=source)  # fmt: skip
            return verdict
        return self._reject(source, verdict.reason.value, verdict.detail)

    def _reject(self, source: str, reason: str, detail: str) -> str:
        self.rejected += 1
        self.last_refusal = (reason, detail)
        log.warning("permit_rejected", source=source, reason=reason, detail=detail)
        self.emit(Rejected(f"permit:{source}", f"permit_{reason}", detail))
        return reason

    def load_dir(self) -> int:
        d = self.cfg.permits.dir
        if d is None:
            return 0
        folder = resolve_path(self.base, d)
        n = 0
        for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                doc = f.read_bytes()
            except OSError as exc:
                self._reject(f.name, "unreadable", str(exc))
                continue
            if isinstance(self.submit(doc, f.name), Permit):
                n += 1
        return n


def permit_json(p: Permit) -> dict[str, Any]:
    """A small, JSON-ready view of a permit for the status page and MQTT."""
    return {
        "id": p.permit_id,
        "type": p.type.value,
        "zone": p.zone_id,
        "state": p.state.value,
        "valid_from_utc": datetime.fromtimestamp(p.valid_from, UTC).isoformat(),
        "valid_to_utc": datetime.fromtimestamp(p.valid_to, UTC).isoformat(),
        "people": [{"id": x.id, "role": x.role.value} for x in p.people],
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)

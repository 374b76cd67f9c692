"""Durable records: hazards and permit events to the central ledger through the SQLite
outbox, and every safety decision to the hash-chained audit log.

The engine loop never waits on a disk: `record()` only queues. A writer task group-commits
the queue to the outbox and appends the audit lines in a thread. A full or failing disk
is a loud fault (logged, shown, counted) while the safety functions carry on; nothing
already accepted by the outbox is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import structlog

from gateway.config import GatewayConfig
from gateway.config.loader import read_secret
from gateway.core.clock import Clock
from gateway.ledger.audit import AuditLog
from gateway.ledger.client import LedgerClient
from gateway.ledger.outbox import Outbox, OutboxError, OutboxFull, State

log = structlog.get_logger("records")


class Records:
    def __init__(self, cfg: GatewayConfig, state_dir: Path, base: Path, clock: Clock) -> None:
        self.cfg = cfg
        self.state_dir = state_dir
        self.base = base
        self.clock = clock
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self.outbox: Outbox | None = None
        self.audit: AuditLog | None = None
        self.fault = ""
        """A loud fault ("" when all is well): the disk is full, the outbox could not open..."""
        self.queued = 0
        self.lost_before_outbox = 0
        self.parked: list[dict[str, Any]] = []
        """The oldest parked records (refused by the ledger), refreshed every few seconds for the page."""

    def record(self, stream: str, body: dict[str, Any]) -> None:
        """Queue a ledger record (stream "hazards" or "permit-events"); never blocks, never raises."""
        full = {"id": str(uuid.uuid4()), "gateway": self.cfg.site.gateway_id, **body}
        self._queue.append((stream, full))
        self.queued += 1
        self._wake.set()

    def audit_line(self, kind: str, body: dict[str, Any]) -> None:
        self._queue.append(("audit", {"kind": kind, **body}))
        self._wake.set()

    def _set_fault(self, fault: str) -> None:
        if fault != self.fault:
            self.fault = fault
            if fault:
                log.error("records_fault", fault=fault, queued=len(self._queue))
            else:
                log.info("records_recovered")

    async def open(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = Outbox(self.state_dir / "outbox.db")
            await self.outbox.open()
            self.audit = await asyncio.to_thread(AuditLog, self.state_dir / "audit.jsonl")
        except (OSError, OutboxError, Exception) as exc:
            self._set_fault(f"cannot open records in {self.state_dir}: {exc}")

    async def run(self) -> None:
        """Write queued records durably; send outbox records to the ledger when one is configured."""
        outbox = self.outbox
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._writer(), name="records[writer]")
            if outbox is not None:
                tg.create_task(self._parked_list(outbox), name="records[parked]")
            if self.cfg.ledger.url and outbox is not None:
                tg.create_task(self._sender(outbox), name="records[ledger]")

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if not await self._write_batch():
                await asyncio.sleep(1.0)  # keep the queue and try again (the fault is shown meanwhile)

    async def _write_batch(self) -> bool:
        """Write what is queued now; False (queue kept, fault raised) when the disk refused."""
        batch = list(self._queue)
        ledger = [(s, b) for s, b in batch if s != "audit"]
        audit = [b for s, b in batch if s == "audit"] + [{"kind": f"ledger_{s}", **b} for s, b in ledger]
        try:
            if ledger and self.outbox is not None:
                await self.outbox.put_many(ledger)
            if audit and self.audit is not None:
                await asyncio.to_thread(self._append_audit, audit)
        except OutboxFull as exc:
            self._set_fault(f"outbox full ({exc.limit} records): the ledger is unreachable too long")
            return False
        except (OutboxError, OSError) as exc:
            self._set_fault(f"cannot write records: {exc}")
            return False
        for _ in batch:
            self._queue.popleft()
        if self.outbox is not None and self.audit is not None:
            self._set_fault("")
        return True

    async def _parked_list(self, outbox: Outbox, every_s: float = 2.0) -> None:
        while True:
            try:
                recs = await outbox.list(state=State.PARKED, limit=20)
                self.parked = [
                    {"id": r.id, "stream": r.stream, "reason": r.park_reason, "created_utc": r.created_utc}
                    for r in recs
                ]
            except OutboxError as exc:
                self._set_fault(f"cannot read the outbox: {exc}")
            await asyncio.sleep(every_s)

    def _append_audit(self, lines: list[dict[str, Any]]) -> None:
        audit = self.audit
        if audit is None:
            raise OSError(f"the audit log in {self.state_dir} is not open")
        for line in lines:
            audit.append(line)

    async def _sender(self, outbox: Outbox) -> None:
        token = read_secret(self.base, self.cfg.ledger.token_file)
        async with LedgerClient(self.cfg.ledger.url, token=token) as client:
            await outbox.run(client.send)

    async def close(self) -> None:
        """Flush what is queued (bounded), then close."""
        if self._queue and self.outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await self._write_batch()
        if self._queue:
            log.error("records_unwritten_on_stop", count=len(self._queue))
        if self.outbox is not None:
            await self.outbox.close()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)

    def stats(self) -> dict[str, Any]:
        ob = self.outbox
        return {
            "fault": self.fault or None,
            "queued": len(self._queue),
            "depth": ob.depth() if ob is not None else None,
            "parked": ob.parked_count() if ob is not None else None,
            "parked_records": self.parked,
            "ledger": self.cfg.ledger.url or None,
        }

"""Anchors of the audit chain: its head (seq, hash, UTC) published where the box cannot rewrite it.

`audit verify` catches any edited, deleted or reordered line, but a file cut at the end looks
like a file that ended there. An anchor published earlier closes that gap: `edge-gateway
audit verify FILE --anchor SEQ:HASH` proves the file still holds that head unchanged, and a
file that ends before it is reported as truncated with the missing range. The daemon
publishes the head at start (the previous run's last record), every `audit.anchor_interval_s`
and at stop, retained on MQTT `audit/head`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from gateway.ledger.audit import Head

log = structlog.get_logger("anchors")


class AnchorPublisher:
    def __init__(
        self,
        head: Callable[[], Head | None],
        publish: Callable[[dict[str, Any]], None],
        utc: Callable[[], str],
        interval_s: float,
    ) -> None:
        """`head`: the chain's current head (None while the audit log is not open); `publish`:
        where an anchor goes (the daemon: a retained MQTT state)."""
        self._head = head
        self._publish = publish
        self._utc = utc
        self.interval_s = interval_s
        self.last: dict[str, Any] | None = None
        """The last anchor published (for /api/state)."""

    def publish(self, reason: str) -> None:
        head = self._head()
        if head is None:
            return
        if self.last is not None and self.last["seq"] == head.seq and reason == "interval":
            return  # nothing appended since: the retained anchor still stands
        anchor = {"seq": head.seq, "hash": head.hash, "utc": self._utc(), "reason": reason}
        try:
            self._publish(anchor)
        except Exception as exc:
            log.error("audit_anchor_failed", seq=head.seq, reason=reason, error=repr(exc))
            return
        self.last = anchor
        log.info("audit_anchor", seq=head.seq, reason=reason)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.publish("interval")


__all__ = ["AnchorPublisher"]

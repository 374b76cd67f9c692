"""Permit sync against the real reference ledger on 127.0.0.1, with the gateway's real loader.

The loader (gateway.core.inputs.PermitLoader) verifies every document with the pinned ledger key;
the sync pulls, submits, caches and, at start, re-submits the cache.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.ledger.permit_codec import sign_permit
from firmware_sim.ledger import ReferenceLedger
from gateway.config.loader import engine_cfg, parse
from gateway.core.inputs import PermitLoader
from gateway.ledger.client import LedgerClient
from gateway.ledger.permit_sync import PermitSync
from rules.events import Event, PermitUpdate, Rejected
from rules.permit import PermitState
from tests.support.clock import FakeClock
from tests.support.ledger import permit_doc, running_ledger
from tests.support.procs import wait_for

T0 = 1_740_816_000  # 2025-03-01T08:00:00Z
H = 3600


def fresh_clock() -> FakeClock:
    """The shell's only time source, set by the test: a minute after T0."""
    return FakeClock(mono=1000.0, utc=T0 + 60)


@dataclass
class Gateway:
    """One gateway 'boot': its loader, the events it emitted, its sync."""

    tmp: Path
    ledger_url: str
    clock: FakeClock
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        raw = {
            "site": {"id": "plant-1", "gateway_id": "gw-1"},
            "zones": [{"id": "bay-1", "kind": "hot_work"}, {"id": "tank-7", "kind": "confined_space"}],
            "ledger": {"url": self.ledger_url, "public_key_file": "ledger.pub"},
            "state": {"dir": "state"},
        }
        cfg = parse(raw, "test", self.tmp)
        self.loader = PermitLoader(cfg, engine_cfg(cfg), self.tmp, self.events.append, self.clock)
        self.client = LedgerClient(self.ledger_url, timeout=1.0)
        self.sync = PermitSync(
            self.client,
            self.loader,
            "plant-1",
            ["bay-1", "tank-7"],
            self.tmp / "state" / "permits.db",
            poll_s=0.05,
            clock=self.clock,
            backoff_base_s=0.01,
            backoff_max_s=0.05,
        )

    async def __aenter__(self) -> Gateway:
        await self.client.start()
        await self.sync.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sync.close()
        await self.client.close()

    def accepted(self) -> list[tuple[str, PermitState]]:
        return [(e.permit.permit_id, e.permit.state) for e in self.events if isinstance(e, PermitUpdate)]

    def rejected(self) -> list[tuple[str, str]]:
        return [(e.source, e.reason) for e in self.events if isinstance(e, Rejected)]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[ReferenceLedger]:
    async with running_ledger() as led:
        (tmp_path / "ledger.pub").write_bytes(led.public_key)
        yield led


def hw(pid: str = "HW-1", hours: float = 8, **over: Any) -> dict[str, Any]:
    return permit_doc(pid, "bay-1", valid_from=T0, valid_to=T0 + hours * H, **over)


def cs(pid: str = "CS-2", hours: float = 8, **over: Any) -> dict[str, Any]:
    return permit_doc(pid, "tank-7", valid_from=T0, valid_to=T0 + hours * H, kind="confined_space", **over)


def cached_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as con:
        return [r[0] for r in con.execute("SELECT permit_id FROM permits ORDER BY permit_id")]


async def test_permits_are_pulled_submitted_cached_and_a_forgery_is_refused(
    tmp_path: Path, ledger: ReferenceLedger
) -> None:
    ledger.add_permit(hw())
    ledger.add_permit(cs())
    ledger.add_permit(permit_doc("HW-8", "boiler", valid_from=T0, valid_to=T0 + H))  # not our zone: never asked
    ledger.store_signed_permit(sign_permit(hw("HW-666"), Ed25519PrivateKey.generate()))  # forged
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.poll_once() == ""
        assert sorted(gw.accepted()) == [("CS-2", PermitState.ACTIVE), ("HW-1", PermitState.ACTIVE)]
        assert gw.rejected() == [("permit:ledger:bay-1", "permit_bad_signature")]
        st = gw.sync.status()
        assert (st.accepted, st.rejected, st.cached, st.polls, st.last_error) == (2, 1, 2, 1, "")
        assert st.last_ok_utc == "2025-03-01T08:01:00.000Z"
        assert cached_ids(gw.sync.cache_path) == ["CS-2", "HW-1"]
        assert ledger.requests[("GET", "/v1/permits", 200)] == 2  # one GET per zone

        # Unchanged versions are not submitted again (no engine churn, no log per poll).
        assert await gw.sync.poll_once() == ""
        assert len(gw.events) == 3 and (gw.sync.accepted, gw.sync.rejected) == (2, 1)

        # A new version is; a withdrawn permit leaves the cache (not the engine).
        ledger.add_permit(hw(state="suspended"))
        ledger.remove_permit("CS-2")
        assert await gw.sync.poll_once() == ""
        assert gw.accepted()[-1] == ("HW-1", PermitState.SUSPENDED)
        assert cached_ids(gw.sync.cache_path) == ["HW-1"] and gw.sync.status().cached == 1
        assert gw.sync.status_json()["rejected"] == 1


async def test_ledger_down_cached_permits_work_until_expiry(tmp_path: Path, ledger: ReferenceLedger) -> None:
    clock = fresh_clock()
    ledger.add_permit(hw(hours=2))
    ledger.add_permit(cs(hours=8))
    async with Gateway(tmp_path, ledger.url, clock) as gw:
        assert await gw.sync.poll_once() == ""
    await ledger.stop()  # the ledger is gone for the rest of the test

    # Restart 1: the cache is verified again and handed to the engine; the poll fails.
    clock.utc_s = T0 + H
    async with Gateway(tmp_path, ledger.url, clock) as gw:
        assert await gw.sync.load_cache() == 2
        assert sorted(gw.accepted()) == [("CS-2", PermitState.ACTIVE), ("HW-1", PermitState.ACTIVE)]
        error = await gw.sync.poll_once()
        assert "get_permits" in error and gw.sync.status().last_error == error
        assert gw.sync.status().last_ok_utc is None and gw.sync.status().cached == 2
        assert gw.rejected() == []

    # Restart 2, after HW-1's valid_to: it is dropped from the cache without being submitted.
    clock.utc_s = T0 + 3 * H
    async with Gateway(tmp_path, ledger.url, clock) as gw:
        assert await gw.sync.load_cache() == 1
        assert gw.accepted() == [("CS-2", PermitState.ACTIVE)] and gw.rejected() == []
        assert cached_ids(gw.sync.cache_path) == ["CS-2"]

    # Restart 3, after everything expired: nothing left.
    clock.utc_s = T0 + 9 * H
    async with Gateway(tmp_path, ledger.url, clock) as gw:
        assert await gw.sync.load_cache() == 0
        assert gw.events == [] and cached_ids(gw.sync.cache_path) == []


async def test_a_tampered_cache_entry_is_refused_and_deleted(tmp_path: Path, ledger: ReferenceLedger) -> None:
    ledger.add_permit(hw(hours=2))
    ledger.add_permit(cs())
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.poll_once() == ""
    db = tmp_path / "state" / "permits.db"
    with sqlite3.connect(db) as con:  # someone with the disk extends HW-1 by a day
        doc = json.loads(con.execute("SELECT doc FROM permits WHERE permit_id='HW-1'").fetchone()[0])
        doc["valid_to"] += 24 * H
        con.execute("UPDATE permits SET doc=?, valid_to=? WHERE permit_id='HW-1'", (json.dumps(doc), doc["valid_to"]))
    con.close()
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.load_cache() == 1
        assert gw.accepted() == [("CS-2", PermitState.ACTIVE)]
        assert gw.rejected() == [("permit:cache", "permit_bad_signature")]
        assert cached_ids(db) == ["CS-2"] and gw.sync.status().rejected == 1


async def test_a_refused_new_version_evicts_the_cached_one(tmp_path: Path, ledger: ReferenceLedger) -> None:
    clock = fresh_clock()
    ledger.add_permit(hw(hours=2))
    async with Gateway(tmp_path, ledger.url, clock) as gw:
        assert await gw.sync.poll_once() == "" and cached_ids(gw.sync.cache_path) == ["HW-1"]
        ledger.add_permit(hw(hours=2, people=[{"id": "op-1", "role": "operator"}]))  # no fire watch, no issuer
        assert await gw.sync.poll_once() == ""
        assert gw.rejected() == [("permit:ledger:bay-1", "permit_invalid")]
        assert cached_ids(gw.sync.cache_path) == []


async def test_run_backs_off_while_the_ledger_fails_and_recovers(tmp_path: Path, ledger: ReferenceLedger) -> None:
    ledger.add_permit(cs())
    ledger.fail_for(60, status=503)
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        task = asyncio.create_task(gw.sync.run())
        try:
            await wait_for(lambda: gw.sync.polls >= 3, 5, what="polls retried")
            assert "HTTP 503" in gw.sync.status().last_error and gw.accepted() == []
            ledger.clear_faults()
            gw.sync.kick()
            await wait_for(lambda: gw.sync.status().last_error == "", 5, what="recovered")
            assert gw.accepted() == [("CS-2", PermitState.ACTIVE)]
            assert gw.sync.status().last_ok_utc is not None and gw.sync.status().cached == 1
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_an_unusable_cache_is_a_shown_fault_and_permits_still_sync(
    tmp_path: Path, ledger: ReferenceLedger
) -> None:
    ledger.add_permit(cs())
    (tmp_path / "state").write_text("a file where the state directory should be")
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.load_cache() == 0
        assert await gw.sync.poll_once() == ""
        assert gw.accepted() == [("CS-2", PermitState.ACTIVE)]
        st = gw.sync.status()
        assert "cannot open" in st.cache_error and st.cached == 0 and gw.sync.status_json()["cache_error"]


async def test_an_older_revision_from_the_ledger_or_the_cache_is_refused(
    tmp_path: Path, ledger: ReferenceLedger
) -> None:
    """Issue 15.3 on the sync and cache paths: the ledger (or someone between) serving the genuine
    v1 after v2 suspended the permit is refused; the cache keeps v2; a restart with the marks
    file lost still refuses v1 because the cache's v2 is submitted again first."""
    v1 = ledger.add_permit(hw())
    assert v1["revision"] == 1
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.poll_once() == ""
        assert ledger.add_permit(hw(state="suspended"))["revision"] == 2
        assert await gw.sync.poll_once() == ""
        assert gw.accepted()[-1] == ("HW-1", PermitState.SUSPENDED)

        ledger.store_signed_permit(v1)  # the old, correctly signed document is served again
        assert await gw.sync.poll_once() == ""
        assert gw.rejected() == [("permit:ledger:bay-1", "permit_revision_older")]
        assert gw.accepted()[-1] == ("HW-1", PermitState.SUSPENDED)
        with sqlite3.connect(gw.sync.cache_path) as con:
            (doc,) = con.execute("SELECT doc FROM permits WHERE permit_id='HW-1'").fetchone()
        assert json.loads(doc)["revision"] == 2  # the cache holds the highest accepted revision

    (tmp_path / "state" / "permit-revisions.json").unlink()  # the marks file is lost
    async with Gateway(tmp_path, ledger.url, fresh_clock()) as gw:
        assert await gw.sync.load_cache() == 1  # v2 from the cache rebuilds the mark
        assert gw.loader.submit(v1, "api:test") == "revision_older"
        assert [s for s, _ in gw.accepted()] == ["HW-1"] and gw.accepted()[-1][1] is PermitState.SUSPENDED

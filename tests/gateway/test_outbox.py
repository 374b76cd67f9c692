"""The durable outbox: durability, group commit, bounds, ordering, parking, crash safety.

Delivery is tested against the real reference ledger (firmware_sim.ledger) over HTTP on
127.0.0.1, with its fault knobs; crash safety with kill -9 of a child process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.ledger import ReferenceLedger
from gateway.ledger.client import LedgerClient
from gateway.ledger.outbox import STREAMS, Outbox, OutboxError, OutboxFull, State
from tests.support.ledger import hazard, permit_event, running_ledger
from tests.support.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


@pytest.fixture
async def ledger() -> AsyncIterator[ReferenceLedger]:
    async with running_ledger() as led:
        yield led


@pytest.fixture
async def client(ledger: ReferenceLedger) -> AsyncIterator[LedgerClient]:
    async with LedgerClient(ledger.url, timeout=2.0) as c:
        yield c


class Sender:
    """Runs Outbox.run in a task for the duration of a block; re-raises its failure."""

    def __init__(self, ob: Outbox, client: LedgerClient) -> None:
        self.ob, self.client = ob, client
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sender:
        self.task = asyncio.create_task(self.ob.run(self.client.send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # surface a crash of the sender
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def assert_in_order_once(led: ReferenceLedger, stream: str, keys: list[str]) -> None:
    """The ledger holds exactly `keys`, each once, and received them in seq order."""
    recs = led.records(stream)
    got = [r["id"] for r in recs]
    assert got == keys, f"{stream}: ledger order/content differs"
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_put_is_durable_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "ob.db"
    async with Outbox(db) as ob:
        keys = [await ob.put(STREAMS[i % 2], hazard(i) if i % 2 == 0 else permit_event(i)) for i in range(10)]
        assert ob.depth() == 10
    async with Outbox(db) as ob:
        recs = await ob.list()
        assert [r.key for r in recs] == keys
        assert [r.seq for r in recs if r.stream == "hazards"] == [1, 2, 3, 4, 5]
        assert [r.seq for r in recs if r.stream == "permit-events"] == [1, 2, 3, 4, 5]
        assert all(r.body["id"] == r.key and r.body["seq"] == r.seq and r.state is State.PENDING for r in recs)
        assert recs[0].body["title"] == "O2 low #0"
        await ob.put("hazards", hazard(99))
        assert (await ob.list(stream="hazards"))[-1].seq == 6  # seq continues after a restart
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


async def test_concurrent_puts_share_one_transaction(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        await ob.put("hazards", hazard(0))
        before = ob.stats().transactions
        keys = await asyncio.gather(*(ob.put("permit-events", permit_event(i)) for i in range(50)))
        st = ob.stats()
        assert st.puts == 51
        # Without group commit this would be 50 transactions (50 fsyncs).
        assert st.transactions - before <= 2, st
        assert {r.key for r in await ob.list(stream="permit-events")} == set(keys)


async def test_full_outbox_refuses_loudly_and_put_many_is_atomic(tmp_path: Path) -> None:
    db = tmp_path / "ob.db"
    async with Outbox(db, max_records=5) as ob:
        first = await ob.put_many([("hazards", hazard(i)) for i in range(3)])
        with pytest.raises(OutboxFull) as info:
            await ob.put_many([("hazards", hazard(i)) for i in range(3)])
        assert (info.value.limit, info.value.undelivered, info.value.wanted) == (5, 3, 3)
        assert ob.depth() == 3  # all or nothing
        more = await ob.put_many([("hazards", hazard(3)), ("permit-events", permit_event(4))])
        with pytest.raises(OutboxError):  # OutboxFull is an OutboxError: one except clause catches both
            await ob.put("hazards", hazard(5))
    async with Outbox(db, max_records=5) as ob:
        assert [r.key for r in await ob.list()] == first + more


async def test_put_with_known_key_adds_nothing(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        body = hazard(1, id="0b7e1f55-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
        assert await ob.put("hazards", body) == body["id"]
        assert await ob.put("hazards", body) == body["id"]
        assert ob.depth() == 1 and ob.stats().puts == 1


@pytest.mark.parametrize(
    ("stream", "body", "match"),
    [
        ("alarms", hazard(), "unknown stream"),
        ("hazards", hazard(seq=3), "seq"),
        ("hazards", hazard(id="not-a-uuid"), "uuid"),
        ("hazards", hazard(id="0B7E1F55-2C3D-4E5F-8A9B-0C1D2E3F4A5B"), "lowercase"),
        ("hazards", hazard(evidence={"x": object()}), "serializable"),
    ],
)
async def test_bad_put_is_refused_in_the_caller(tmp_path: Path, stream: str, body: Any, match: str) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        with pytest.raises((ValueError, TypeError), match=match):
            await ob.put(stream, body)
        assert ob.depth() == 0


async def test_disk_full_raises_outbox_error_and_keeps_what_was_accepted(tmp_path: Path) -> None:
    db = tmp_path / "ob.db"

    def small_disk(con: sqlite3.Connection) -> None:
        con.execute("PRAGMA max_page_count=40")  # a real SQLITE_FULL, as on a full disk

    acked: list[str] = []
    async with Outbox(db, on_connect=small_disk) as ob:
        with pytest.raises(OutboxError) as info:
            for i in range(500):
                acked.append(await ob.put("hazards", hazard(i, evidence={"blob": "x" * 2000})))
        assert "full" in info.value.reason and not isinstance(info.value, OutboxFull)
        assert acked, "the limit was too small to accept anything"
        assert ob.depth() == len(acked)
    async with Outbox(db) as ob:
        assert [r.key for r in await ob.list(limit=1000)] == acked
        await ob.put("hazards", hazard(1))  # works again once there is room


async def test_second_owner_is_refused(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db"):
        with pytest.raises(OutboxError, match="another process"):
            await Outbox(tmp_path / "ob.db").open()


async def test_drains_each_stream_in_order_exactly_once(
    tmp_path: Path, ledger: ReferenceLedger, client: LedgerClient
) -> None:
    async with Outbox(tmp_path / "ob.db", keep_sent=5, **FAST) as ob:
        h = [await ob.put("hazards", hazard(i)) for i in range(12)]
        p = [await ob.put("permit-events", permit_event(i)) for i in range(8)]
        async with Sender(ob, client):
            await wait_for(lambda: ob.depth() == 0, timeout=10, what="outbox drained")
        assert_in_order_once(ledger, "hazards", h)
        assert_in_order_once(ledger, "permit-events", p)
        sent = await ob.list(state="sent")
        assert [r.key for r in sent] == p[-5:]  # compacted to the newest 5 rows (the tail)


async def test_backoff_on_500s_then_drains_in_order(
    tmp_path: Path, ledger: ReferenceLedger, client: LedgerClient
) -> None:
    ledger.fail_next(6, status=500)
    async with Outbox(tmp_path / "ob.db", **FAST) as ob:
        keys = [await ob.put("hazards", hazard(i)) for i in range(10)]
        async with Sender(ob, client):
            await wait_for(lambda: ob.depth() == 0, timeout=10, what="outbox drained")
        assert not ob.stats().blocked_streams
    assert ledger.requests[("POST", "/v1/hazards", 500)] == 6
    assert ledger.requests[("POST", "/v1/hazards", 201)] == 10
    assert_in_order_once(ledger, "hazards", keys)


async def test_4xx_parks_the_record_and_the_stream_moves_on(
    tmp_path: Path, ledger: ReferenceLedger, client: LedgerClient
) -> None:
    ledger.reject_next(1, status=422)
    async with Outbox(tmp_path / "ob.db", **FAST) as ob:
        keys = [await ob.put("hazards", hazard(i)) for i in range(5)]
        async with Sender(ob, client):
            await wait_for(lambda: ob.depth() == 0, timeout=10, what="outbox drained")
            assert ob.parked_count() == 1
            (parked,) = await ob.list(state=State.PARKED)
            assert parked.key == keys[0] and parked.park_reason is not None and "422" in parked.park_reason
            assert_in_order_once(ledger, "hazards", keys[1:])
            assert await ob.retry(parked.id) is True
            await wait_for(lambda: ob.depth() == 0 and ob.parked_count() == 0, timeout=10, what="un-parked sent")
        assert await ob.retry(parked.id) is False  # nothing parked under that id any more
    assert [r["id"] for r in ledger.records("hazards")] == keys[1:] + keys[:1]


async def test_ledger_down_for_a_while_then_up_drains_in_order(tmp_path: Path) -> None:
    async with running_ledger() as ledger:
        port = ledger.port
    async with LedgerClient(f"http://127.0.0.1:{port}", timeout=1.0) as c:
        async with Outbox(tmp_path / "ob.db", **FAST) as ob:
            h = [await ob.put("hazards", hazard(i)) for i in range(15)]
            p = [await ob.put("permit-events", permit_event(i)) for i in range(15)]
            async with Sender(ob, c):
                await wait_for(lambda: set(ob.stats().blocked_streams) == set(STREAMS), what="both streams blocked")
                heads = await ob.list(limit=1)
                await wait_for(lambda: ob.depth() == 30, what="nothing lost while down")
                async with running_ledger(port=port) as led:
                    ob.kick()
                    await wait_for(lambda: ob.depth() == 0, timeout=10, what="drained after the ledger came back")
                    assert_in_order_once(led, "hazards", h)
                    assert_in_order_once(led, "permit-events", p)
                    assert not ob.stats().blocked_streams
            assert heads[0].key == h[0]


async def test_reply_lost_after_store_is_resent_and_counted_once(tmp_path: Path, ledger: ReferenceLedger) -> None:
    ledger.hang_next(1, seconds=3.0, after_store=True)
    async with LedgerClient(ledger.url, timeout=0.3) as c, Outbox(tmp_path / "ob.db", **FAST) as ob:
        keys = [await ob.put("permit-events", permit_event(i)) for i in range(3)]
        async with Sender(ob, c):
            await wait_for(lambda: ob.depth() == 0, timeout=10, what="drained")
    assert_in_order_once(ledger, "permit-events", keys)
    # The resend of the first record met the stored copy: a 200 "duplicate", not a second record.
    assert ledger.requests[("POST", "/v1/permit-events", 200)] >= 1


async def _read_keys(stream: asyncio.StreamReader, keys: list[tuple[str, str]]) -> None:
    """Collect every "stream key" line the child prints, until its stdout closes."""
    while line := (await stream.readline()).decode():
        parts = line.split()
        if len(parts) == 2:
            keys.append((parts[0], parts[1]))


async def _kill9_cycle(db: Path, want: int, led: ReferenceLedger | None = None) -> list[tuple[str, str]]:
    """Start the writer child, let it acknowledge `want` keys, kill -9 it, return all acknowledged keys."""
    args = [sys.executable, "-m", "tests.support.ledger", "--outbox-writer", str(db)]
    if led is not None:
        args += ["--ledger", led.url]
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    keys: list[tuple[str, str]] = []
    reader = asyncio.create_task(_read_keys(proc.stdout, keys))
    try:
        # With a ledger: also wait until the child's sender is mid-stream, so the kill hits sends too.
        await wait_for(
            lambda: len(keys) >= want and (led is None or len(led.records("hazards")) >= 50),
            timeout=20, what="child acknowledged enough records",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of puts, commits and sends
        await proc.wait()
        async with asyncio.timeout(10):
            await reader  # what it printed before dying: all acknowledged
    assert proc.returncode == -signal.SIGKILL, "the child ended before the kill: raise --max-records"
    return keys


async def _check_after_crash(db: Path, acked: list[tuple[str, str]], led: ReferenceLedger) -> None:
    async with Outbox(db, **FAST) as ob:
        recs = await ob.list(limit=1_000_000)
        stored = {r.key for r in recs}
        missing = {k for _, k in acked} - stored
        assert not missing, f"{len(missing)} acknowledged records lost"
        for s in STREAMS:
            assert sorted(r.seq for r in recs if r.stream == s) == [r.seq for r in recs if r.stream == s]
        async with LedgerClient(led.url, timeout=2.0) as c, Sender(ob, c):
            await wait_for(lambda: ob.depth() == 0, timeout=30, what="drained after the crash")
        assert ob.parked_count() == 0  # a resend never differed from the first send (no 409)
    for s in STREAMS:
        recs_s = led.records(s)
        ids = [r["id"] for r in recs_s]
        assert len(ids) == len(set(ids))
        seqs = [r["seq"] for r in recs_s]
        assert seqs == list(range(1, len(seqs) + 1)), f"{s}: gaps, duplicates or disorder at the ledger"
    assert {r["id"] for s in STREAMS for r in led.records(s)} == stored
    assert not any(status == 409 for (_, _, status) in led.requests)


@pytest.mark.slow
async def test_kill9_writer_loses_nothing_acknowledged(tmp_path: Path, ledger: ReferenceLedger) -> None:
    db = tmp_path / "ob.db"
    acked = await _kill9_cycle(db, want=400)
    acked += await _kill9_cycle(db, want=400)  # a second crash, on the recovered file
    assert len(acked) >= 800
    await _check_after_crash(db, acked, ledger)


@pytest.mark.slow
async def test_kill9_while_sending_duplicates_nothing_at_the_ledger(tmp_path: Path, ledger: ReferenceLedger) -> None:
    db = tmp_path / "ob.db"
    acked = await _kill9_cycle(db, want=600, led=ledger)
    await _check_after_crash(db, acked, ledger)

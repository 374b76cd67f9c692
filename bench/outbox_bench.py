"""The ledger outbox: durable puts/s, drain rate after an outage, records lost after kill -9.

The reference ledger (`python -m firmware_sim.ledger`) and the outbox user are separate
processes; the outbox user is this module run as a child:

    python -m bench.outbox_bench writer --db DB --seconds S [--writers W] [--ledger URL]
    python -m bench.outbox_bench drain  --db DB --ledger URL --n N

`writer` puts hazard/permit-event records from W concurrent tasks and prints
``stream key`` once each put() has returned (acknowledged = durable), then ``done {...}``.
`drain` fills N records while the ledger is down, prints ``filled``, waits for a line on
stdin (the parent has started the ledger), then times delivery until the outbox is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import OTHERS_CPU, ROOT, BenchError, free_port, pinned, stop_pid, wait_port


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(stream: str, n: int) -> dict[str, Any]:
    if stream == "hazards":
        return {"gateway": "gw-bench", "site": "bench-plant", "zone": "tank-q", "category": "gas", "level": "major",
                "recurring": False, "title": f"h2s alarm1 #{n}", "evidence": {"n": n, "h2s": 7.0}, "utc": _utc()}
    return {"gateway": "gw-bench", "site": "bench-plant", "permit_id": "HW-1", "zone": "bay-2",
            "event": "ignition_dropped", "reason": f"LEL alarm #{n}", "utc": _utc(), "data": {"n": n}}


async def _writer(db: str, seconds: float, writers: int, ledger: str | None) -> None:
    from gateway.ledger.client import LedgerClient
    from gateway.ledger.outbox import Outbox

    async with Outbox(db, max_records=1_000_000, backoff_base_s=0.01, backoff_max_s=0.05) as ob:
        count = 0
        t0 = time.monotonic()
        deadline = t0 + seconds

        async def one(w: int) -> None:
            nonlocal count
            i = 0
            while time.monotonic() < deadline:
                stream = "hazards" if (w + i) % 2 == 0 else "permit-events"
                key = await ob.put(stream, record(stream, i))
                count += 1
                i += 1
                sys.stdout.write(f"{stream} {key}\n")

        client = LedgerClient(ledger, timeout=2.0) if ledger else None
        sender = None
        if client is not None:
            await client.start()
            sender = asyncio.create_task(ob.run(client.send))
        print("ready", flush=True)
        async with asyncio.TaskGroup() as tg:
            for w in range(writers):
                tg.create_task(one(w))
        elapsed = time.monotonic() - t0
        sys.stdout.flush()
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        if client is not None:
            await client.close()
        print("done " + json.dumps({"puts": count, "seconds": round(elapsed, 3),
                                    "transactions": ob.stats().transactions}), flush=True)


async def _drain(db: str, ledger: str, n: int) -> None:
    from gateway.ledger.client import LedgerClient
    from gateway.ledger.outbox import Outbox

    async with Outbox(db, max_records=1_000_000, backoff_base_s=0.05, backoff_max_s=0.2) as ob, \
            LedgerClient(ledger, timeout=2.0) as client:
        await ob.put_many([(s, record(s, i)) for i in range(n // 2) for s in ("hazards", "permit-events")])
        sender = asyncio.create_task(ob.run(client.send))
        print("filled", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        t0 = time.monotonic()
        ob.kick()
        depth0 = ob.depth()
        deadline = t0 + 120
        while ob.depth() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - the outbox has no 'empty' event
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        print("done " + json.dumps({"records": depth0 - ob.depth(), "left": ob.depth(), "seconds": round(elapsed, 3)}),
              flush=True)


class Ledger:
    """The reference ledger as its own process on a fixed port (so it can come back after an outage)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(pinned(OTHERS_CPU, [sys.executable, "-m", "firmware_sim.ledger", "--port",
                                                         str(port)]), cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_port(port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self) -> set[str]:
        out: set[str] = set()
        for s in ("hazards", "permit-events"):
            with urllib.request.urlopen(f"{self.url}/dev/records/{s}", timeout=30) as r:
                doc = json.loads(r.read())
            recs = doc.get("records", doc) if isinstance(doc, dict) else doc
            out |= {rec["id"] for rec in recs}
        return out

    def stop(self) -> None:
        stop_pid(self.proc)


def _child(args: list[str], stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(pinned(OTHERS_CPU, [sys.executable, "-m", "bench.outbox_bench", *args]), cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE if stdin else None, text=True)


def durable(work: Path, seconds: float, writers: int) -> dict[str, Any]:
    p = _child(["writer", "--db", str(work / "durable.db"), "--seconds", str(seconds), "--writers", str(writers)])
    out, _ = p.communicate(timeout=seconds + 60)
    done = [ln for ln in out.splitlines() if ln.startswith("done ")]
    if not done:
        raise BenchError("outbox durable", f"writer exited {p.returncode} without a result")
    doc = json.loads(done[-1][5:])
    return {"outbox_durable_per_s": round(doc["puts"] / doc["seconds"], 1), "outbox_writers": writers,
            "outbox_transactions": doc["transactions"], "outbox_puts": doc["puts"]}


def drain(work: Path, n: int) -> dict[str, Any]:
    port = free_port()
    p = _child(["drain", "--db", str(work / "drain.db"), "--ledger", f"http://127.0.0.1:{port}", "--n", str(n)],
               stdin=True)
    assert p.stdout is not None and p.stdin is not None
    if p.stdout.readline().strip() != "filled":
        raise BenchError("outbox drain", "child did not fill")
    time.sleep(0.5)  # the senders hit the outage and back off
    led = Ledger(port)
    try:
        p.stdin.write("go\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=180)
        doc = json.loads([ln for ln in out.splitlines() if ln.startswith("done ")][-1][5:])
        delivered = len(led.keys())
    finally:
        led.stop()
    return {"outbox_drain_per_s": round(doc["records"] / doc["seconds"], 1), "outbox_drain_records": doc["records"],
            "outbox_drain_left": doc["left"], "outbox_drain_at_ledger": delivered}


def kill9(work: Path, load_s: float, writers: int) -> dict[str, Any]:
    """Writer + sender under load, SIGKILL, reopen, drain to the ledger: every acknowledged key must be there."""
    db = work / "kill9.db"
    led = Ledger(free_port())
    try:
        p = _child(["writer", "--db", str(db), "--seconds", str(load_s + 60), "--writers", str(writers), "--ledger",
                    led.url])
        assert p.stdout is not None
        p.stdout.readline()  # ready
        time.sleep(load_s)
        os.kill(p.pid, signal.SIGKILL)  # mid-puts, mid-commits, mid-sends
        out, _ = p.communicate(timeout=30)
        acked = {ln.split()[1] for ln in out.splitlines() if len(ln.split()) == 2}
        d = _child(["drain", "--db", str(db), "--ledger", led.url, "--n", "0"], stdin=True)
        assert d.stdout is not None and d.stdin is not None
        d.stdout.readline()
        d.stdin.write("go\n")
        d.stdin.flush()
        d.communicate(timeout=180)
        at_ledger = led.keys()
    finally:
        led.stop()
    return {"outbox_lost_after_kill9": len(acked - at_ledger), "outbox_kill9_acked": len(acked),
            "outbox_kill9_killed_by": "SIGKILL" if p.returncode == -signal.SIGKILL else f"exit {p.returncode}"}


def outbox_section(work: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out |= durable(work, 3.0 if quick else 10.0, writers=16)
    out |= drain(work, 1000 if quick else 5000)
    out |= kill9(work, 2.0 if quick else 5.0, writers=16)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.outbox_bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--db", required=True)
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--writers", type=int, default=16)
    w.add_argument("--ledger", default=None)
    d = sub.add_parser("drain")
    d.add_argument("--db", required=True)
    d.add_argument("--ledger", required=True)
    d.add_argument("--n", type=int, required=True)
    a = p.parse_args(argv)
    # stdout carries the protocol (acknowledged keys); the outbox's own logs go to stderr.
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if a.cmd == "writer":
        if not (0 < a.seconds <= 600 and 1 <= a.writers <= 256):
            p.error("--seconds in (0, 600], --writers in [1, 256]")
        asyncio.run(_writer(a.db, a.seconds, a.writers, a.ledger))
    else:
        if not 0 <= a.n <= 1_000_000:
            p.error("--n in [0, 1000000]")
        asyncio.run(_drain(a.db, a.ledger, a.n))


if __name__ == "__main__":
    main()

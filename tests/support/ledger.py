"""Test helpers around the reference ledger and the outbox.

`running_ledger()` serves firmware_sim.ledger on a free 127.0.0.1 port in this process.
`permit_doc()` is a complete, valid permit body in the gateway's wire format (built with
firmware_sim.permits, as every test's and the bench's permits are).
`python -m tests.support.ledger --outbox-writer DB [--ledger URL]` is the child process the
kill -9 tests run: concurrent writers put records as fast as they can and print each key
once put() has returned ("acknowledged"); with --ledger it also runs the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firmware_sim import permits
from firmware_sim.ledger import ReferenceLedger
from firmware_sim.permits import approval, competency, gas_test, person


@asynccontextmanager
async def running_ledger(db: str | Path = ":memory:", **kwargs: Any) -> AsyncIterator[ReferenceLedger]:
    """A started reference ledger; stopped and closed on exit."""
    led = ReferenceLedger(db, **kwargs)
    await led.start()
    try:
        yield led
    finally:
        await led.stop()
        led.close()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hazard(n: int = 0, **over: Any) -> dict[str, Any]:
    """A valid hazard body without id/seq (the outbox adds them)."""
    body: dict[str, Any] = {
        "gateway": "gw-test",
        "site": "plant-1",
        "zone": "tank-7",
        "category": "gas",
        "level": "major",
        "recurring": False,
        "title": f"O2 low #{n}",
        "evidence": {"n": n, "o2": 18.9},
        "utc": utc_now(),
    }
    return body | over


def permit_event(n: int = 0, **over: Any) -> dict[str, Any]:
    """A valid permit-event body without id/seq."""
    body: dict[str, Any] = {
        "gateway": "gw-test",
        "site": "plant-1",
        "permit_id": "HW-1",
        "zone": "tank-7",
        "event": "ignition_dropped",
        "reason": f"LEL alarm #{n}",
        "utc": utc_now(),
        "data": {"n": n},
    }
    return body | over


def permit_doc(
    permit_id: str = "HW-1",
    zone_id: str = "bay-1",
    *,
    valid_from: float,
    valid_to: float,
    site_id: str = "plant-1",
    kind: str = "hot_work",
    state: str = "active",
    **over: Any,
) -> dict[str, Any]:
    """An unsigned permit that `drivers.ledger.permit_codec.verify_permit` accepts once the
    reference ledger has given it a revision and signed it (times are integer epoch seconds;
    the gas test is taken at valid_from)."""
    t0, t1 = int(valid_from), int(valid_to)
    crew = (
        [person("op-1", "operator"), person("fw-1", "fire_watch")]
        if kind == "hot_work"
        else [person("en-1", "entrant"), person("at-1", "attendant")]
    )
    body = permits.permit_doc(
        permit_id,
        zone_id,
        site_id=site_id,
        valid_from=t0,
        valid_to=t1,
        kind=kind,
        grade="first",
        state=state,
        revision=None,
        people=[*crew, person("is-1", "issuer", "Wáng Lì")],
        gas_tests=[gas_test(t0, "gt-1", co=1.5, bump_at=t0 - 3600, cal_due=t1 + 86400)],
        isolations=[{"tag": "LOTO-7", "point": "valve 3"}],
        approvals=[approval("is-1", t0 - 60, signature="c2ln")],
        history=[{"from": "approved", "to": "active", "at": t0, "reason": ""}],
        max_entrants=2 if kind == "confined_space" else None,
        competencies=[competency("op-1", "C-1", t1 + 86400)],
    )
    return body | over


def full_record(stream: str, seq: int = 1, **over: Any) -> dict[str, Any]:
    """A complete record as the outbox would send it (id and seq set)."""
    base = hazard(seq) if stream == "hazards" else permit_event(seq)
    return base | {"id": str(uuid.uuid4()), "seq": seq} | over


async def _writer(db: str, ledger: str | None, writers: int, max_records: int) -> None:
    from gateway.ledger.client import LedgerClient
    from gateway.ledger.outbox import Outbox

    async with Outbox(db, backoff_base_s=0.01, backoff_max_s=0.05) as ob:
        count = 0

        async def one(w: int) -> None:
            nonlocal count
            for i in range(max_records):
                if count >= max_records:  # bounded, so the test's drain afterwards is too
                    return
                count += 1
                stream = "hazards" if (w + i) % 2 == 0 else "permit-events"
                body = hazard(i) if stream == "hazards" else permit_event(i)
                key = await ob.put(stream, body)
                sys.stdout.write(f"{stream} {key}\n")
                sys.stdout.flush()

        async with asyncio.TaskGroup() as tg:
            for w in range(writers):
                tg.create_task(one(w))
            if ledger:
                client = LedgerClient(ledger, timeout=2.0)
                await client.start()
                tg.create_task(ob.run(client.send))
            print("ready", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--outbox-writer", required=True, metavar="DB")
    p.add_argument("--ledger", default=None)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--max-records", type=int, default=3000)
    a = p.parse_args()
    asyncio.run(_writer(a.outbox_writer, a.ledger, a.writers, a.max_records))


if __name__ == "__main__":
    main()

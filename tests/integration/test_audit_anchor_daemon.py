"""Anchors over the real daemon (issue 18.2): the chain's head is retained on MQTT audit/head at
start and at stop, each run's first record names the previous run's head, and `edge-gateway
audit verify --anchor` proves the file against the stop anchor or reports a cut tail."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app.daemon import Daemon
from tests.support.plant import PERMISSIVE, ROOT, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

HEAD = "edge/demo-plant/gw-demo/audit/head"


def verify(path: Path, anchor: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", "audit", "verify", str(path), "--anchor",
         f"{anchor['seq']}:{anchor['hash']}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_heads_are_anchored_at_start_and_stop_and_a_cut_tail_is_caught(
    broker: Mosquitto, tmp_path: Path
) -> None:
    heads: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="anchor-watch") as c:
            await c.subscribe(HEAD, qos=1)
            ready.set()
            async for m in c.messages:
                heads.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with plant(broker.port, tmp_path) as p:
            for run_no in range(2):
                d = Daemon(p.config())
                run = asyncio.create_task(d.run())
                await wait_for(lambda d=d: d.ready, 15, what=f"run {run_no} ready")
                if run_no == 0:
                    await wait_for(lambda: p.relay.coils[PERMISSIVE], 15, what="permissive on")
                    p.tank.set_value("o2", 19.0)  # something to record (it stays latched into run 1)
                await wait_for(lambda d=d: d.state.steps > 20, 5, what="engine steps")
                d.request_stop()
                assert await asyncio.wait_for(run, 20) == 0
                await wait_for(lambda: any(h["reason"] == "stop" for h in heads[-1:]), 10, what="stop anchor")
            audit = d.state_dir / "audit.jsonl"
    finally:
        watcher.cancel()

    starts = [h for h in heads if h["reason"] == "start"]
    stops = [h for h in heads if h["reason"] == "stop"]
    assert len(starts) == 2 and len(stops) == 2
    assert starts[1]["seq"] == stops[0]["seq"]  # the second run starts from the first run's last record
    records = [json.loads(x)["record"] for x in audit.read_text().splitlines()]
    started = [r for r in records if r["kind"] == "gateway_started"]
    assert started[0]["previous_head"]["seq"] == -1  # an empty chain: the genesis head
    assert [s["previous_stop"] for s in started] == ["none", "clean"]
    assert started[1]["previous_head"] == {"seq": stops[0]["seq"], "hash": stops[0]["hash"]}
    assert records[-1]["kind"] == "gateway_stopped" and records[-1]["code"] == 0

    done = verify(audit, stops[-1])
    assert done.returncode == 0 and "present unchanged, 0 after it" in done.stdout, done.stdout + done.stderr
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(audit.read_text().splitlines(keepends=True)[: stops[0]["seq"] + 1]))
    done = verify(cut, stops[-1])
    assert done.returncode == 1 and done.stdout.startswith("TRUNCATED"), done.stdout
    assert f"records {stops[0]['seq'] + 1}..{stops[-1]['seq']} are missing" in done.stdout

"""Negative gas is a detector fault, never "good" (issue 15.4), over the real Modbus path.

A detector's register driven below the signal's lower plausibility limit (negative drift, a
poisoned or mis-zeroed cell) must be BAD (under range) on every channel, drop the zone's
permissive, and stay latched until acknowledged once the value is plausible again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.clock import iso
from rules.events import Ack
from tests.support.daemon import running
from tests.support.plant import PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

TELEMETRY = "edge/demo-plant/gw-demo/telemetry/"


async def signal_state(port: int, sid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/state") as r:
        return next(s for s in (await r.json())["signals"] if s["id"] == sid)


@pytest.mark.parametrize(
    ("gas", "negative", "normal"),
    [("lel", -20.0, 0.0), ("o2", -1.0, 20.9), ("h2s", -5.0, 0.0), ("co", -20.0, 0.0)],
)
async def test_a_negative_gas_reading_is_bad_under_range_denies_and_latches(
    broker: Mosquitto, tmp_path: Path, gas: str, negative: float, normal: float
) -> None:
    sid = f"t101_{gas}"
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (d, sub):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized on good gas")

        p.tank.set_value(gas, negative)
        await wait_for(lambda: not p.relay.coils[PERMISSIVE], 5, what="permissive dropped on negative gas")
        st = await signal_state(p.http_port, sid)
        assert st["quality"] == "bad" and st["reason"] == f"under_range:{negative:g}", st
        # Telemetry never carried the implausible value as a good reading.
        published = [b for t, b, _ in sub.log if t == TELEMETRY + sid]
        assert all(b.get("value") is None or b["value"] >= d.ecfg.signals[sid].under_range for b in published), \
            published  # fmt: skip

        # Plausible again: still latched (denied) until someone acknowledges.
        p.tank.set_value(gas, normal)
        await wait_for(lambda: d.state.signals[sid].quality.value == "good", 5, what="plausible again")
        steps = d.state.steps
        await wait_for(lambda: d.state.steps > steps + 20, 5, what="engine steps with the fault latched")
        assert not p.relay.coils[PERMISSIVE]
        d.inbox.put(Ack("*", "op-1", "operator", iso(d.clock.utc()), "tank-t101"))
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 5, what="permissive back after the ack")


async def test_a_bad_signal_is_shown_as_no_value_with_its_last_good_value_and_age(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Issue 17.1: a cut cable (no answer) or a faulted cell is "—" with the last good value, its
    time and age; never 20.9 beside "BAD"."""
    async with plant(broker.port, tmp_path) as p, running(p, broker) as (_d, _sub):
        await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="good gas")
        good = await signal_state(p.http_port, "t101_o2")
        assert good["value"] == 20.9 and good["last_good"]["value"] == 20.9
        p.tank.set_drop(True)  # the detector stops answering
        await wait_for(lambda: not p.relay.coils[PERMISSIVE], 10, what="permissive dropped on the cut cable")
        bad = await signal_state(p.http_port, "t101_o2")
        assert bad["quality"] == "bad" and bad["value"] is None, bad
        assert bad["last_good"]["value"] == 20.9 and bad["last_good"]["utc"].endswith("Z")
        before = bad["last_good"]["age_s"]

        async def older() -> bool:
            return (await signal_state(p.http_port, "t101_o2"))["last_good"]["age_s"] > before

        await wait_for(older, 5, what="the age counts from the last GOOD reading")

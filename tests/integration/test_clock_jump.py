"""A wall-clock jump (NTP step, a technician setting the time) changes no decision.

Staleness and countdowns run on the monotonic clock; UTC is only recorded, so records carry
the new wall time after a jump while outputs, alarms and permit countdowns carry on.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app.daemon import Daemon
from tests.support.plant import HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


class JumpingClock:
    """Real monotonic time; a wall clock we can step."""

    # Not tests.support.clock.FakeClock: the daemon runs against real devices here, so time must pass by itself.

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.parametrize("jump", [timedelta(hours=3), timedelta(hours=-3)], ids=["forward", "back"])
async def test_wall_clock_jump_changes_no_decision_and_records_keep_utc(
    broker: Mosquitto, tmp_path: Path, jump: timedelta
) -> None:
    async with plant(broker.port, tmp_path) as p:
        clock = JumpingClock()
        d = Daemon(p.config(), clock=clock)
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15)
            faults_before = {sid: st.fault for sid, st in d.state.signals.items()}
            clock.offset = jump
            steps = d.state.steps
            await wait_for(lambda: d.state.steps > steps + 30, 10, what="3 s of engine steps after the jump")
            # Nothing went stale, nothing tripped, the permissive never dropped.
            assert {sid: st.fault for sid, st in d.state.signals.items()} == faults_before
            assert p.relay.coils[PERMISSIVE]
            assert not [c for c in p.relay.changes if c.coil == PERMISSIVE and not c.value]
            # A real alarm after the jump still acts at once, and its record carries the new UTC.
            p.tank.set_value("o2", 19.0)
            await wait_for(lambda: p.relay.coils[HORN], 5)
            topic = d.mqtt.topic("alarm", "tank-t101", "t101_o2")
            body = d.mqtt._retained[topic].body
            stamped = datetime.fromisoformat(body["utc"].replace("Z", "+00:00"))
            assert abs((stamped - clock.utc()).total_seconds()) < 5
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0

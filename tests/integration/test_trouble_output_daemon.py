"""The trouble output announces a dead, hung or faulted gateway through the module's own
watchdog (issue 15.6): energized only while the engine runs and the outputs are confirmed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.app.daemon import Daemon
from gateway.config import ConfigError
from gateway.config.loader import parse
from gateway.core.clock import iso
from rules.events import Ack
from tests.support.daemon import running
from tests.support.plant import DEMO, PERMISSIVE, TROUBLE, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow


async def test_trouble_is_energized_while_healthy_and_drops_on_an_output_fault(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async with plant(broker.port, tmp_path) as p:
        p.relay.set_bit("coil", TROUBLE, True)  # left energized by a previous run: written safe first
        async with running(p, broker) as (d, _):
            first = [c for c in p.relay.changes if c.coil == TROUBLE]
            assert first and first[0].value is False  # de-energized until the engine has decided
            await wait_for(lambda: p.relay.coils[TROUBLE], 10, what="trouble output energized: healthy")

            await wait_for(lambda: p.relay.coils[PERMISSIVE], 10, what="permissive energized")
            p.relay.set_bit("coil", PERMISSIVE, False)  # dropped behind the gateway's back: read-back mismatch
            await wait_for(lambda: bool(d.state.output_fault), 10, what="output fault")
            await wait_for(lambda: not p.relay.coils[TROUBLE], 5, what="trouble lamp lit on the output fault")
            d.inbox.put(Ack("outputs", "op-1", "supervisor", iso(d.clock.utc())))
            await wait_for(lambda: p.relay.coils[TROUBLE], 10, what="healthy again after the ack")
        assert not p.relay.coils[TROUBLE]  # a clean stop is a gateway gone: the lamp is lit


async def test_a_hung_engine_drops_trouble_by_the_modules_watchdog(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with plant(broker.port, tmp_path) as p:
        d = Daemon(p.config())
        run = asyncio.create_task(d.run())
        try:
            await wait_for(lambda: p.relay.coils[TROUBLE], 10, what="healthy")
            hang = asyncio.Event()

            async def stuck(wait_s: float) -> Any:
                await hang.wait()  # never set: the engine hangs while the event loop lives

            monkeypatch.setattr(d.inbox, "get", stuck)
            await wait_for(lambda: p.relay.watchdog_tripped, 5, what="module watchdog trip")
            assert not p.relay.coils[TROUBLE]
            assert [c.cause for c in p.relay.changes if c.coil == TROUBLE][-1] == "watchdog"
        finally:
            d.request_stop()
            await asyncio.wait_for(run, 15)


@pytest.mark.parametrize("bad", [{"safe": True}, {"active_energized": False}])
def test_a_trouble_output_wired_the_wrong_way_is_refused(bad: dict[str, Any]) -> None:
    import tomllib

    raw = tomllib.loads(DEMO.read_text())
    next(o for o in raw["outputs"] if o["kind"] == "trouble").update(bad)
    with pytest.raises(ConfigError) as err:
        parse(raw, "demo.toml", DEMO.parent)
    assert any(p.path == "outputs.gw_trouble.safe" and "normally-closed" in p.hint for p in err.value.problems)

"""Smoke test of the bench's own plumbing (the bench itself is run by hand: `python -m bench --quick`).

Runs only the parts that prove the measurement is real: the generated configuration is
valid, the raw MQTT load generator's packets go through a real mosquitto and are counted
by the sink, and percentiles are nearest-rank.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench import plantcfg
from bench.procs import Gen, Mosquitto, Sink, pct, summary
from gateway.config.loader import load


def test_generated_config_is_valid_with_500_signals_and_200_badges(tmp_path: Path) -> None:
    path = plantcfg.write(tmp_path / "b.toml", plantcfg.Ports(1502, 1503, 1883, 8080), tmp_path / "state",
                          poll_s=0.2, signals=500, badges=200)
    cfg = load(path)
    assert len(cfg.signals) == 505 and len(cfg.badges) == 200
    assert {o.coil for o in cfg.outputs} == {plantcfg.GAS_COIL, plantcfg.MQTT_COIL}


def test_percentiles_are_nearest_rank() -> None:
    v = [float(i) for i in range(1, 101)]
    assert (pct(v, 50), pct(v, 99), pct(v, 100)) == (50.0, 99.0, 100.0)
    assert summary([]) == {"n": 0, "p50": None, "p99": None, "max": None}


@pytest.mark.slow
def test_load_generator_and_sink_count_every_message_through_mosquitto() -> None:
    with tempfile.TemporaryDirectory() as d:
        broker = Mosquitto(Path(d))
        try:
            sink = Sink(broker.port, "bench/load/#", seconds=20)
            sent = Gen(broker.port, rate=2000, seconds=1.0, signals=50).result()
            got = sink.result()
        finally:
            broker.stop()
    assert sent["sent"] >= 1500
    assert got["messages"] == sent["sent"]

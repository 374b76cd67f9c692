"""Condition monitoring end to end: real mosquitto + VibrationSensorSim waveforms -> MqttInput ->
VibrationPipeline -> rules.machines; TemperatureTransmitterSim over real Modbus TCP -> ModbusSource.

Plus the shell pieces on their own: the pipeline's bound (one analysis in flight, newest
frame wins), its refusals as BAD readings, baseline persistence and the minute trends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from drivers.modbus import BusRegistry, DataType, DeviceSpec, ModbusSource, PointSpec, Table
from drivers.mqtt_in import AccelUnit, MqttInput, WaveformFrame, WaveformMapping
from firmware_sim.modbus_devices import TemperatureTransmitterSim
from firmware_sim.mqtt_sensors import Tone, VibrationSensorSim
from gateway.core.trends import TrendPoint, TrendStore, condition_json, trend_points
from gateway.core.vibration import BaselineStore, VibrationPipeline, VibrationPoint, analysis_point
from gateway.northbound.tsdb import encode_line
from rules import machines
from rules.actions import Action, AlarmUpdate, HazardRecord, Note
from rules.condition import MachineCfg
from rules.events import Ack, Event, Quality, Reading, Tick
from rules.vibration import Baseline, IsoCfg, VibrationResult, analyze
from tests.support.clock import FakeClock
from tests.support.procs import Mosquitto, wait_for

TOPIC = "plant/area3/p201/de/waveform"
M1 = MachineCfg("p201", "pump-room", "p201_vib", "p201_temp", stop_output="p201_run")
MACHINES = MappingProxyType({"p201": M1})
RANGE = (-50.0, 200.0)
"""Transmitter range: 4 mA = -50 degC, 20 mA = 200 degC."""


def tone_for(rms_mm_s: float, freq_hz: float = 50.0) -> Tone:
    """A sine of acceleration whose velocity RMS is `rms_mm_s` (a = v_peak * omega)."""
    return Tone(freq_hz, rms_mm_s / 1000.0 * math.sqrt(2) * 2 * math.pi * freq_hz)


@dataclass
class Harness:
    """The machines rule driven directly by what the drivers and the pipeline emit (no daemon)."""

    state: machines.MachinesState = field(default_factory=machines.initial)
    actions: list[Action] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)

    def emit(self, ev: Event) -> None:
        if isinstance(ev, Reading):
            self.readings.append(ev)
        self.step(ev)

    def step(self, ev: Event) -> None:
        self.state, acts = machines.step(self.state, ev, time.monotonic(), MACHINES)
        self.actions.extend(acts)

    @property
    def stopped(self) -> bool:
        return machines.machine_stopped(self.state, "p201_run", MACHINES)

    def alarm(self, kind: str) -> AlarmUpdate | None:
        sig = machines.alarm_signal("p201", kind)
        return next((a for a in reversed(self.actions) if isinstance(a, AlarmUpdate) and a.signal == sig), None)

    def active(self, kind: str) -> bool:
        a = self.alarm(kind)
        return a is not None and bool(a.state["active"])

    def last(self, signal: str) -> Reading | None:
        return next((r for r in reversed(self.readings) if r.signal == signal), None)


@contextlib.asynccontextmanager
async def plant(broker: Mosquitto, *, start_rms: float = 1.0, start_temp: float = 60.0) -> AsyncIterator[
    tuple[Harness, VibrationSensorSim, TemperatureTransmitterSim, VibrationPipeline]
]:
    """Vibration sensor -> broker -> MqttInput -> pipeline, and a 4-20 mA transmitter polled over TCP."""
    h = Harness()
    pipe = VibrationPipeline(h.emit, time.monotonic, {"p201_vib": VibrationPoint(iso=M1.iso, zone="pump-room")})
    sim = VibrationSensorSim(
        broker.url, waveform_topic=TOPIC, tones=(tone_for(start_rms),), noise_rms=0.01, interval_s=0.25, seed=7
    )
    mq = MqttInput(
        broker.url,
        client_id="gw-test-in",
        emit=h.emit,
        waveforms=(WaveformMapping(TOPIC, "p201_vib"),),
        on_waveform=pipe.on_waveform,
        clock=time.monotonic,
    )
    temp = TemperatureTransmitterSim(ranges=(RANGE,))
    temp.set_value("t0", start_temp)
    await temp.start()
    spec = DeviceSpec(
        "temp-p201", "tcp", host="127.0.0.1", port=temp.port, poll_s=0.2,
        points=(PointSpec("p201_temp", Table.INPUT, 0, DataType.UINT16, scale=0.001, unit="degC",
                          current_loop=RANGE),),
    )
    buses = BusRegistry()
    src = ModbusSource(spec, h.emit, time.monotonic, buses)
    tasks = [asyncio.create_task(mq.run(), name="mqtt_in[test]"), asyncio.create_task(src.run(), name="modbus[t]")]
    try:
        await wait_for(lambda: mq.connected, 5.0, what="MQTT input subscribed")
        await sim.start()
        yield h, sim, temp, pipe
    finally:
        await sim.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await pipe.close()
        buses.close()
        await temp.stop()


async def test_waveforms_give_the_analytic_rms_and_zones_c_and_d_alert_and_stop(broker: Mosquitto) -> None:
    async with plant(broker) as (h, sim, _temp, pipe):
        await wait_for(lambda: not h.stopped, 8.0, what="both inputs GOOD: machine released")
        r = h.last("p201_vib")
        assert r is not None and r.quality is Quality.GOOD
        want = sim.expected_rms_mm_s()
        assert want == pytest.approx(1.0, rel=1e-9)
        assert r.value == pytest.approx(want, rel=0.02)  # 8192 samples at 8192 Hz, 50 Hz tone + noise
        st = pipe.status(time.monotonic())["p201_vib"]
        assert st["samples"] == 8192 and st["iso_zone"] == "A"
        assert st["peaks"][0]["frequency_hz"] == pytest.approx(50.0, abs=0.5)

        sim.tones = (tone_for(3.5),)  # group 2 rigid: B/C 2.8, C/D 4.5 mm/s -> zone C
        await wait_for(lambda: h.active("vibration_alert"), 5.0, what="zone C alert")
        alert = h.alarm("vibration_alert")
        assert alert is not None and alert.state["evidence"]["iso_zone"] == "C"
        assert alert.state["evidence"]["rms_mm_s"] == pytest.approx(3.5, rel=0.02)
        assert not h.stopped  # an alert is not a stop

        sim.tones = (tone_for(6.0),)  # zone D
        await wait_for(lambda: h.stopped, 5.0, what="zone D stop demand")
        hz = [a for a in h.actions if isinstance(a, HazardRecord) and a.title == "p201: vibration_trip"]
        assert [(a.category, a.level) for a in hz] == [("mechanical", "major")]
        assert any(isinstance(a, Note) and a.event == "machine_stop" for a in h.actions)

        # Back in zone A: still stopped (latched) until an acknowledgement.
        sim.tones = (tone_for(1.0),)
        await wait_for(lambda: (r := h.last("p201_vib")) is not None and r.value < 1.2, 5.0, what="back to zone A")
        h.step(Tick())
        assert h.stopped
        h.step(Ack("p201", "alice", "supervisor", datetime.now(UTC).isoformat()))
        assert not h.stopped
        assert pipe.stats["p201_vib"].rejected == 0


async def test_winding_over_its_class_limit_over_modbus_trips_and_latches(broker: Mosquitto) -> None:
    async with plant(broker, start_temp=80.0) as (h, _sim, temp, _pipe):
        await wait_for(lambda: not h.stopped, 8.0, what="machine released")
        t = h.last("p201_temp")
        assert t is not None and t.value == pytest.approx(80.0, abs=0.05)  # 4-20 mA resolution: 1 uA

        temp.set_value("t0", 160.0)  # class F: alarm 130, trip 155 degC
        await wait_for(lambda: h.stopped, 5.0, what="temperature trip")
        trip = h.alarm("temperature_trip")
        assert trip is not None and trip.state["evidence"]["temperature_c"] == pytest.approx(160.0, abs=0.05)
        assert {(a.category, a.level) for a in h.actions if isinstance(a, HazardRecord)} >= {
            ("electrical", "major"),
            ("electrical", "general"),
        }
        temp.set_value("t0", 90.0)
        await wait_for(lambda: (r := h.last("p201_temp")) is not None and r.value < 100.0, 5.0, what="cooled")
        assert h.stopped  # latched
        h.step(Ack("*", "alice", "supervisor", datetime.now(UTC).isoformat(), zone="pump-room"))
        assert not h.stopped

        # A broken loop (NAMUR NE43: < 3.6 mA) is a sensor fault, and a fault stops the machine.
        temp.set_current(0, 2.0)
        await wait_for(lambda: h.stopped, 5.0, what="loop fault stops the machine")
        fault = h.alarm("sensor_fault")
        assert fault is not None and "loop_fault" in str(fault.state["evidence"]["reason"])


# --- the pipeline on its own ------------------------------------------------------------


def frame(rms: float, *, signal: str = "v1", rate: float = 8192.0, n: int = 8192, at: float = 1.0) -> WaveformFrame:
    t = np.arange(n) / rate
    tone = tone_for(rms, 80.0)
    x = tone.amplitude * np.sin(2 * np.pi * tone.freq_hz * t)
    x.setflags(write=False)
    return WaveformFrame(signal, rate, AccelUnit.MS2, x, at)


def readings(events: list[Event]) -> list[Reading]:
    return [e for e in events if isinstance(e, Reading)]


async def test_one_analysis_in_flight_per_point_and_the_newest_queued_frame_wins() -> None:
    events: list[Event] = []
    results: list[tuple[str, float]] = []
    pipe = VibrationPipeline(events.append, time.monotonic, {"v1": VibrationPoint(), "v2": VibrationPoint()},
                             on_result=lambda sig, r, at: results.append((sig, at)))
    for i, rms in enumerate((1.0, 2.0, 3.0, 4.0, 5.0)):  # all at once, before any analysis finished
        pipe.on_waveform(frame(rms, at=float(i)))
    pipe.on_waveform(frame(0.5, signal="v2", at=9.0))
    assert pipe.busy == 2  # one per point
    await pipe.idle()
    got = readings(events)
    v1 = [(r.at, round(r.value, 2)) for r in got if r.signal == "v1"]
    assert v1 == [(0.0, 1.0), (4.0, 5.0)]  # the first, then only the newest of those that waited
    assert [(r.signal, round(r.value, 2)) for r in got if r.signal == "v2"] == [("v2", 0.5)]
    st = pipe.stats["v1"]
    assert (st.received, st.analyzed, st.replaced, st.rejected) == (5, 2, 3, 0)
    assert sorted(results) == [("v1", 0.0), ("v1", 4.0), ("v2", 9.0)]
    assert pipe.busy == 0


async def test_refused_frames_are_bad_readings_and_unknown_signals_are_counted() -> None:
    events: list[Event] = []
    pipe = VibrationPipeline(events.append, time.monotonic, {"v1": VibrationPoint(iso=IsoCfg())})
    pipe.on_waveform(frame(1.0, rate=1000.0, n=1000))  # below 2.56 kHz for a 1 kHz band
    pipe.on_waveform(frame(1.0, signal="nope"))
    await pipe.idle()
    got = readings(events)
    assert [(r.signal, r.quality, r.reason) for r in got] == [("v1", Quality.BAD, "bad_payload:low_sample_rate")]
    assert math.isnan(got[0].value) and pipe.unknown == 1
    st = pipe.status(2.0)["v1"]
    assert st["rejection"].startswith("low_sample_rate") and "velocity_rms_mm_s" not in st
    pipe.on_waveform(frame(3.0, at=2.0))
    await pipe.idle()
    st = pipe.status(2.5)["v1"]
    assert (st["rejection"], st["iso_zone"], st["age_s"]) == (None, "C", 0.5)
    assert st["iso"] == {"ab": 1.4, "bc": 2.8, "cd": 4.5, "group": 2, "foundation": "rigid"}


def test_analysis_extras_encode_as_a_tsdb_line() -> None:
    r = analyze(frame(2.0).samples, 8192.0)
    assert isinstance(r, VibrationResult)
    p = analysis_point("v1", "z1", r, 1_700_000_000_000_000_000)
    line, nonfinite = encode_line(p.measurement, p.tags, p.fields, p.ts_ns)
    assert nonfinite == 0
    assert line.startswith("vibration,signal=v1,zone=z1 ")
    assert "peak1_hz=" in line and "crest_factor=" in line and line.endswith(" 1700000000000000000")


# --- baselines and trends ---------------------------------------------------------------


def test_baseline_store_round_trip_and_damage(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path / "state" / "baselines.json")
    assert store.load() == {}
    assert store.save("p201", Baseline.restored(1.25).to_dict())
    assert store.save("p202", Baseline(learning=(1.0, 1.1)).to_dict())
    assert store.load() == {"p201": Baseline.restored(1.25), "p202": Baseline(learning=(1.0, 1.1))}
    doc = json.loads(store.path.read_text())
    doc["p202"] = {"value": -1}
    store.path.write_text(json.dumps(doc))
    assert store.load() == {"p201": Baseline.restored(1.25)}  # the damaged one relearns
    store.path.write_text("{not json")
    assert store.load() == {}
    blocked = BaselineStore(tmp_path / "a-file" / "baselines.json")
    (tmp_path / "a-file").write_text("")  # its "directory" is a file: the write fails
    assert blocked.save("p201", Baseline.restored(1.0).to_dict()) is False


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock(mono=100.0, utc=1_700_000_000.0)  # 2023-11-14T22:13:20Z


def test_trends_minutes_in_utc_with_iso_bands_and_limits(clock: FakeClock) -> None:
    store = TrendStore(trend_points(MACHINES, {"p201_temp": "degC"}), clock)
    # Monotonic 100 s = UTC 22:13:20; readings 10 s apart over two wall-clock minutes.
    for i, v in enumerate((1.0, 2.0, 3.0, 4.0, 5.0)):
        assert store.on_reading(Reading("p201_vib", v, 100.0 + 10.0 * i))
    assert not store.on_reading(Reading("p201_vib", math.nan, 150.0, Quality.BAD, "timeout"))
    assert not store.on_reading(Reading("other", 1.0, 150.0))
    clock.mono = 160.0
    clock.set_utc(1_700_000_060.0)
    s = store.series("p201_vib")
    assert s["minutes"] == [
        {"minute_utc": "2023-11-14T22:13Z", "min": 1.0, "max": 4.0, "mean": 2.5, "count": 4},
        {"minute_utc": "2023-11-14T22:14Z", "min": 5.0, "max": 5.0, "mean": 5.0, "count": 1},
    ]
    assert s["iso"] == {"ab": 1.4, "bc": 2.8, "cd": 4.5, "group": 2, "foundation": "rigid"}
    t = store.series("p201_temp")
    assert (t["unit"], t["minutes"], t["limits"]) == ("degC", [], {"alarm_c": 130.0, "trip_c": 155.0})
    with pytest.raises(KeyError, match="unknown point"):
        store.series("nope")


def test_trends_window_ends_now_so_a_silent_point_shows_its_gap(clock: FakeClock) -> None:
    store = TrendStore({"v": TrendPoint("vibration", "mm/s")}, clock)
    store.on_reading(Reading("v", 1.0, 100.0))
    clock.set_utc(clock.time() + 25 * 3600)  # a day and an hour later, nothing since
    assert store.series("v")["minutes"] == []


def test_condition_section_matches_what_the_status_page_reads(clock: FakeClock) -> None:
    s = machines.initial()
    for ev in (Reading("p201_vib", 3.0, 100.0), Reading("p201_temp", 70.0, 100.0)):
        s, _ = machines.step(s, ev, 100.0, MACHINES)
    trends = TrendStore(trend_points(MACHINES), clock)
    body = condition_json(s, MACHINES, 100.5, None, trends)
    (m,) = body["machines"]
    assert (m["id"], m["zone"], m["level"], m["stopped"], m["rms_mm_s"], m["iso_zone"]) == (
        "p201", "pump-room", "alarm", False, 3.0, "C",
    )
    assert m["trend"] == {"vibration": "/api/trends/p201_vib", "temperature": "/api/trends/p201_temp"}
    json.dumps(body)  # JSON-ready

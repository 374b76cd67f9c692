"""Scripted scenarios: the simulated plant changes over time, and says what it is doing.

A scenario is a list of steps `(at_s, text, action)` played in a loop. Actions are plain
callables over the simulators (and a hook to inject an acknowledgement, standing in for
the operator at the status page); ramps are expanded into small steps so that values move
the way a real atmosphere does, not in jumps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from firmware_sim.modbus_devices import GasDetectorSim, TemperatureTransmitterSim
from firmware_sim.mqtt_sensors import Tone, VibrationSensorSim


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    text: str
    action: Callable[[], None]


@dataclass
class Plant:
    """The simulators a scenario may touch, and the operator's hand."""

    gas: dict[str, GasDetectorSim]
    ack: Callable[[str], None]
    """Acknowledge every alarm of a zone (what an operator does at the status page)."""
    vibration: VibrationSensorSim | None = None
    temperature: TemperatureTransmitterSim | None = None


def ramp(sim: GasDetectorSim, name: str, start: float, end: float, at_s: float, over_s: float, every_s: float = 0.5):
    n = max(1, int(over_s / every_s))
    return [
        Step(at_s + i * every_s, "", lambda v=start + (end - start) * i / n: sim.set_value(name, round(v, 1)))
        for i in range(n + 1)
    ]


def o2_drop(p: Plant) -> tuple[float, list[Step]]:
    t = p.gas["gas-t101"]
    steps = [
        Step(0, "normal: O2 20.9 %vol in Tank T-101; the gas permissive relay is energized", lambda: None),
        Step(6, "O2 starts falling in Tank T-101 (a purge valve left open)", lambda: None),
        *ramp(t, "o2", 20.9, 19.0, 6, 6),
        Step(12.5, "O2 below 19.5 %vol: expect an EVACUATE alarm, permissive relay dropped, horn on", lambda: None),
        Step(20, "ventilation restored: O2 rising back to 20.9 %vol (the alarm stays latched)", lambda: None),
        *ramp(t, "o2", 19.0, 20.9, 20, 4),
        Step(
            28,
            "operator acknowledges Tank T-101 alarms (back in range, so the latch clears)",
            lambda: p.ack("tank-t101"),
        ),
        Step(34, "normal again; the scenario loops in a few seconds", lambda: None),
    ]
    return 40.0, steps


def detector_fault(p: Plant) -> tuple[float, list[Step]]:
    t = p.gas["gas-t101"]
    return 36.0, [
        Step(0, "normal: the Tank T-101 detector reports good readings", lambda: None),
        Step(
            6,
            "the detector reports an internal FAULT: never 'normal', the permissive drops",
            lambda: t.set_status(fault=True),
        ),
        Step(14, "the detector recovers (the fault stays latched until acknowledged)", lambda: t.set_status()),
        Step(20, "the detector stops answering (cable cut): readings go BAD, then stale", lambda: t.set_drop(True)),
        Step(26, "the cable is repaired", lambda: t.set_drop(False)),
        Step(30, "operator acknowledges Tank T-101", lambda: p.ack("tank-t101")),
    ]


def lel_rise(p: Plant) -> tuple[float, list[Step]]:
    b = p.gas["gas-bay2"]
    return 36.0, [
        Step(0, "normal: welding bay 2 LEL 0 %LEL", lambda: None),
        Step(6, "LEL rising in bay 2 (a leaking flange)", lambda: None),
        *ramp(b, "lel", 0.0, 12.0, 6, 5),
        Step(11.5, "LEL at 10 %LEL: alarm 1, hot work must stop (ignition stays off)", lambda: None),
        Step(18, "the leak is isolated; LEL falling", lambda: None),
        *ramp(b, "lel", 12.0, 0.0, 18, 5),
        Step(27, "operator acknowledges bay 2", lambda: p.ack("bay-2")),
    ]


def _vib(p: Plant, mm_s: float) -> Callable[[], None]:
    """Set the pump's vibration to a velocity RMS (one 25 Hz tone)."""

    def set_it() -> None:
        if p.vibration is not None:
            p.vibration.tones = (Tone(25.0, mm_s / 1000 * 2**0.5 * 2 * 3.141592653589793 * 25.0),)

    return set_it


def pump_wear(p: Plant) -> tuple[float, list[Step]]:
    return 70.0, [
        Step(0, "pump P-201 healthy: 1.0 mm/s (ISO zone A), winding 72 degC; run relay energized", _vib(p, 1.0)),
        Step(15, "a bearing starts to wear: 3.4 mm/s (zone C): maintenance is warned", _vib(p, 3.4)),
        Step(30, "worse: 5.2 mm/s (zone D): the pump is stopped (run relay de-energized, latched)", _vib(p, 5.2)),
        Step(42, "bearing replaced: 1.0 mm/s again; the stop stays latched until acknowledged", _vib(p, 1.0)),
        Step(52, "maintenance acknowledges the pump: it may run again", lambda: p.ack("pump-room")),
    ]


SCENARIOS: dict[str, Callable[[Plant], tuple[float, list[Step]]]] = {
    "pump-wear": pump_wear,
    "o2-drop": o2_drop,
    "detector-fault": detector_fault,
    "lel-rise": lel_rise,
}


async def play(
    name: str, plant: Plant, say: Callable[[str], None], clock: Callable[[], float], loops: int | None = None
) -> None:
    """Play a scenario in a loop (forever unless `loops` is given)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; use one of {sorted(SCENARIOS)}")
    period, steps = SCENARIOS[name](plant)
    steps = sorted(steps, key=lambda s: s.at_s)
    n = 0
    while loops is None or n < loops:
        start = clock()
        for st in steps:
            delay = start + st.at_s - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            st.action()
            if st.text:
                say(st.text)
        rest = start + period - clock()
        if rest > 0:
            await asyncio.sleep(rest)
        n += 1

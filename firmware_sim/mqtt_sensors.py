"""Simulated MQTT field devices: a push gas sensor, a vibration sensor and ESPresense nodes.

Each publisher connects with aiomqtt, publishes on its own interval, reconnects after a
broker restart, and has fault knobs that can be changed while it runs:

* `fault`: `Fault.GARBAGE` (not JSON, not even UTF-8), `NAN` (the JSON token ``NaN``),
  `HUGE` (a payload over the gateway's size limit), `WRONG_TYPE` (a string or a bool
  where a number belongs), `FREEZE` (repeats the last good message byte for byte, its
  timestamp included), `SILENT` (stays connected, publishes nothing).
* `fault_every`: with a fault set, only every n-th message is faulty (interleaving).

`payload(fault)` builds one message without publishing it, for tests that need an exact
sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

import aiomqtt
import numpy as np
import numpy.typing as npt


class Fault(StrEnum):
    NONE = "none"
    GARBAGE = "garbage"
    NAN = "nan"
    HUGE = "huge"
    WRONG_TYPE = "wrong_type"
    FREEZE = "freeze"
    SILENT = "silent"


GARBAGE = b"\xff\xfe{\"value\": 1\x00\x9c"
"""Not UTF-8 and not JSON."""


def _url(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    return (host, int(port)) if host else (rest, 1883)


class MqttPublisher:
    """Base of the simulated devices: connection, interval loop, faults and counters."""

    def __init__(self, url: str, *, client_id: str, interval_s: float) -> None:
        self.host, self.port = _url(url)
        self.client_id = client_id
        self.interval_s = interval_s
        self.fault = Fault.NONE
        """Fault knob; may be changed while running."""
        self.fault_every = 1
        """With a fault set, every n-th message is faulty (1 = all)."""
        self.published = 0
        """Messages published since start."""
        self.connected = False
        self.retain = False
        """Publish with the retain flag (the gateway refuses retained data without a timestamp)."""
        self._last_good: list[tuple[str, bytes]] = []
        self._n = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def messages(self, fault: Fault) -> list[tuple[str, bytes]]:
        """(topic, payload) pairs of one publishing round with `fault` applied."""
        raise NotImplementedError

    def _round(self) -> list[tuple[str, bytes]]:
        self._n += 1
        fault = self.fault if self.fault is not Fault.NONE and self._n % max(1, self.fault_every) == 0 \
            else Fault.NONE
        if fault is Fault.SILENT:
            return []
        if fault is Fault.FREEZE:
            return list(self._last_good)
        msgs = self.messages(fault)
        if fault is Fault.NONE:
            self._last_good = msgs
        return msgs

    async def start(self) -> None:
        """Start publishing in a background task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"sim[{self.client_id}]")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop publishing and disconnect, within `timeout_s`. The client library can swallow a
        cancellation that lands while it waits for a PUBACK (a loaded run once published on for
        five minutes after stop): the loop also checks a stop flag, and the cancel is repeated."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while not task.done() and asyncio.get_running_loop().time() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            if task.done():
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    task.result()
        self.connected = False

    async def _run(self) -> None:
        delay = 0.05
        while not self._stopping:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id, timeout=5.0) as client:
                    self.connected = True
                    delay = 0.05
                    while not self._stopping:
                        for topic, payload in self._round():
                            await client.publish(topic, payload, qos=1, retain=self.retain)
                            self.published += 1
                        await asyncio.sleep(self.interval_s)
                return
            except aiomqtt.MqttError:
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


def _pad(doc: dict[str, object], size: int) -> bytes:
    return json.dumps({**doc, "pad": "x" * size}).encode()


class GasSensorSim(MqttPublisher):
    """A push gas sensor: ``{"value": 20.9, "unit": "%vol", "ts": ...}`` on one topic."""

    def __init__(
        self,
        url: str,
        *,
        topic: str,
        value: float,
        unit: str,
        client_id: str = "sim-gas",
        interval_s: float = 0.2,
        ts: Literal["epoch", "epoch_ms", "iso"] | None = "epoch",
        wall: Callable[[], float] = time.time,
        huge_bytes: int = 128 * 1024,
    ) -> None:
        super().__init__(url, client_id=client_id, interval_s=interval_s)
        self.topic = topic
        self.value = value
        """The reading knob."""
        self.unit = unit
        """The unit knob (set another to provoke unit_mismatch)."""
        self.ts = ts
        self.wall = wall
        self.huge_bytes = huge_bytes

    def _ts(self) -> object:
        now = self.wall()
        if self.ts == "epoch":
            return now
        if self.ts == "epoch_ms":
            return int(now * 1000)
        return datetime.fromtimestamp(now, UTC).isoformat()

    def payload(self, fault: Fault = Fault.NONE) -> bytes:
        doc: dict[str, object] = {"value": self.value, "unit": self.unit}
        if self.ts is not None:
            doc["ts"] = self._ts()
        if fault is Fault.GARBAGE:
            return GARBAGE
        if fault is Fault.NAN:
            doc["value"] = math.nan  # json.dumps writes the non-standard token NaN
        elif fault is Fault.WRONG_TYPE:
            doc["value"] = str(self.value)
        elif fault is Fault.HUGE:
            return _pad(doc, self.huge_bytes)
        return json.dumps(doc).encode()

    def messages(self, fault: Fault) -> list[tuple[str, bytes]]:
        return [(self.topic, self.payload(fault))]


@dataclass(frozen=True, slots=True)
class Tone:
    """One sinusoidal component of the simulated acceleration."""

    freq_hz: float
    amplitude: float
    """Peak acceleration in the sensor's unit."""
    phase_rad: float = 0.0


class VibrationSensorSim(MqttPublisher):
    """A vibration sensor publishing acceleration waveforms and/or a velocity RMS value."""

    def __init__(
        self,
        url: str,
        *,
        waveform_topic: str | None,
        rms_topic: str | None = None,
        tones: tuple[Tone, ...] = (Tone(50.0, 2.0),),
        noise_rms: float = 0.0,
        dc_offset: float = 0.0,
        unit: Literal["m/s2", "g"] = "m/s2",
        sample_rate_hz: int = 8192,
        n_samples: int = 8192,
        client_id: str = "sim-vib",
        interval_s: float = 1.0,
        seed: int = 0,
        huge_samples: int = 300_000,
    ) -> None:
        super().__init__(url, client_id=client_id, interval_s=interval_s)
        self.waveform_topic = waveform_topic
        self.rms_topic = rms_topic
        self.tones = tones
        """Tone knob: frequencies and peak amplitudes."""
        self.noise_rms = noise_rms
        self.dc_offset = dc_offset
        self.unit = unit
        self.sample_rate_hz = sample_rate_hz
        self.n_samples = n_samples
        self.rms_mm_s: float | None = None
        """RMS knob; None = computed from the tones (`expected_rms_mm_s`)."""
        self.huge_samples = huge_samples
        self._rng = np.random.default_rng(seed)
        self._t0 = 0.0

    def waveform(self) -> npt.NDArray[np.float64]:
        """One block of samples: tones + Gaussian noise + DC, phase-continuous between blocks."""
        t = self._t0 + np.arange(self.n_samples, dtype=np.float64) / self.sample_rate_hz
        self._t0 += self.n_samples / self.sample_rate_hz
        x = np.full(self.n_samples, self.dc_offset, dtype=np.float64)
        for tone in self.tones:
            x += tone.amplitude * np.sin(2 * np.pi * tone.freq_hz * t + tone.phase_rad)
        if self.noise_rms > 0:
            x += self._rng.normal(0.0, self.noise_rms, self.n_samples)
        return x

    def expected_rms_mm_s(self, band: tuple[float, float] = (10.0, 1000.0)) -> float:
        """Velocity RMS (mm/s) of the tones inside `band` (ISO 10816 band), noise and DC excluded."""
        scale = 9.80665 if self.unit == "g" else 1.0
        total = 0.0
        for tone in self.tones:
            if band[0] <= tone.freq_hz <= band[1]:
                v_peak = tone.amplitude * scale / (2 * np.pi * tone.freq_hz)  # m/s
                total += (v_peak / math.sqrt(2)) ** 2
        return math.sqrt(total) * 1000.0

    def waveform_payload(self, fault: Fault = Fault.NONE) -> bytes:
        samples: list[object] = [round(float(v), 6) for v in self.waveform()]
        if fault is Fault.GARBAGE:
            return GARBAGE
        if fault is Fault.NAN:
            samples[len(samples) // 2] = math.nan
        elif fault is Fault.WRONG_TYPE:
            samples[0] = "0.5"
        elif fault is Fault.HUGE:
            samples = [0.0] * self.huge_samples
        doc = {"sample_rate_hz": self.sample_rate_hz, "unit": self.unit, "samples": samples}
        return json.dumps(doc).encode()

    def rms_payload(self, fault: Fault = Fault.NONE) -> bytes:
        value: object = self.rms_mm_s if self.rms_mm_s is not None else round(self.expected_rms_mm_s(), 4)
        if fault is Fault.GARBAGE:
            return GARBAGE
        if fault is Fault.NAN:
            value = math.nan
        elif fault is Fault.WRONG_TYPE:
            value = True
        elif fault is Fault.HUGE:
            return _pad({"rms_mm_s": value}, 128 * 1024)
        return json.dumps({"rms_mm_s": value}).encode()

    def messages(self, fault: Fault) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        if self.waveform_topic is not None:
            out.append((self.waveform_topic, self.waveform_payload(fault)))
        if self.rms_topic is not None:
            out.append((self.rms_topic, self.rms_payload(fault)))
        return out


class EspresenseSim(MqttPublisher):
    """ESPresense nodes reporting scripted badges on ``{prefix}/devices/{id}/{room}``.

    `script` maps an ESPresense device id to {room: rssi}; change it while running to
    walk a badge from room to room. A device missing from the script is not heard.
    """

    def __init__(
        self,
        url: str,
        *,
        script: Mapping[str, Mapping[str, float]],
        prefix: str = "espresense",
        client_id: str = "sim-espresense",
        interval_s: float = 0.2,
    ) -> None:
        super().__init__(url, client_id=client_id, interval_s=interval_s)
        self.script: dict[str, dict[str, float]] = {k: dict(v) for k, v in script.items()}
        """The scripted knob: device id -> {room: rssi}."""
        self.prefix = prefix

    def payload(self, device_id: str, rssi: float, fault: Fault = Fault.NONE) -> bytes:
        ref = -59
        distance = round(10 ** ((ref - rssi) / 35.0), 2)
        doc: dict[str, object] = {
            "id": device_id, "rssi@1m": ref, "rssi": rssi, "raw": distance, "distance": distance,
            "speed": 0.0, "mac": "c2:00:00:00:00:01", "txPower": ref,
        }
        if fault is Fault.GARBAGE:
            return GARBAGE
        if fault is Fault.NAN:
            doc["rssi"] = math.nan
        elif fault is Fault.WRONG_TYPE:
            doc["rssi"] = str(rssi)
        elif fault is Fault.HUGE:
            return _pad(doc, 64 * 1024)
        return json.dumps(doc).encode()

    def messages(self, fault: Fault) -> list[tuple[str, bytes]]:
        return [
            (f"{self.prefix}/devices/{device_id}/{room}", self.payload(device_id, rssi, fault))
            for device_id, rooms in self.script.items()
            for room, rssi in rooms.items()
        ]

"""MqttInput against a real mosquitto, fed by the firmware_sim MQTT devices."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import pwd
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.mqtt_in import (
    Backoff,
    EspresenseCfg,
    MqttConfigError,
    MqttInput,
    PayloadKind,
    PayloadMapping,
    TlsOptions,
    WaveformFrame,
    WaveformMapping,
    parse_url,
    rms_mapping,
)
from firmware_sim.mqtt_sensors import EspresenseSim, Fault, GasSensorSim, Tone, VibrationSensorSim
from rules.events import DeviceStatus, Event, Quality, Reading, Rejected, Sighting
from tests.support.procs import Mosquitto, free_port, mosquitto, wait_for, wait_port

FAST = Backoff(initial_s=0.05, max_s=0.3)
O2 = PayloadMapping(topic="plant/area1/gas/+/state", signal="o2", unit="%vol", value_path="value",
                    unit_path="unit", ts_path="ts")
LEL = PayloadMapping(topic="plant/area1/gas/+/state", signal="lel", unit="%LEL", value_path="lel")


class Collector:
    """Collects emitted events; typed views for the assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.frames: list[WaveformFrame] = []

    def emit(self, ev: Event) -> None:
        self.events.append(ev)

    def readings(self, signal: str) -> list[Reading]:
        return [e for e in self.events if isinstance(e, Reading) and e.signal == signal]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def running(inp: MqttInput) -> AsyncIterator[MqttInput]:
    task = asyncio.create_task(inp.run(), name="mqtt_in[test]")
    try:
        yield inp
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "run() must only end by cancellation"


@contextlib.asynccontextmanager
async def publisher(broker: Mosquitto, client_id: str = "test-pub") -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id) as client:
        yield client


def make_input(broker: Mosquitto, col: Collector, **kw: Any) -> MqttInput:
    kw.setdefault("mappings", (O2, LEL))
    return MqttInput(broker.url, client_id="gw-test", emit=col.emit, backoff=FAST, **kw)


async def test_good_payloads_flow(broker: Mosquitto) -> None:
    col = Collector()
    inp = make_input(broker, col)
    sim = GasSensorSim(broker.url, topic="plant/area1/gas/cs-1/state", value=20.9, unit="%vol", interval_s=0.05)
    async with running(inp):
        await wait_for(lambda: inp.connected, what="connected")
        await sim.start()
        try:
            await wait_for(lambda: len(col.readings("o2")) >= 3, what="three O2 readings")
            sim.value = 19.0
            await wait_for(lambda: col.readings("o2")[-1].value == 19.0, what="the new value")
        finally:
            await sim.stop()
    r = col.readings("o2")[-1]
    assert (r.quality, r.reason) == (Quality.GOOD, "")
    # Back-dated by the payload's own timestamp, never into the future.
    assert r.at <= time.monotonic()
    # The same document carries no "lel" field: counted as missing, never a reading.
    assert col.readings("lel") == []
    assert inp.rejected["missing_field"] >= 3
    assert col.of(DeviceStatus)[0] == DeviceStatus(device="mqtt", up=True)
    assert inp.received >= 4 and inp.accepted == len(col.readings("o2"))


async def test_one_document_feeds_several_signals(broker: Mosquitto) -> None:
    col = Collector()
    inp = make_input(broker, col)
    async with running(inp), publisher(broker) as pub:
        await wait_for(lambda: inp.connected, what="connected")
        doc = {"value": 20.8, "unit": "%vol", "ts": time.time(), "lel": 3}
        await pub.publish("plant/area1/gas/cs-2/state", json.dumps(doc), qos=1)
        await wait_for(lambda: len(col.of(Reading)) == 2, what="two readings")
    assert sorted((r.signal, r.value) for r in col.of(Reading)) == [("lel", 3.0), ("o2", 20.8)]


async def test_malformed_payloads_are_dropped_and_counted_while_good_ones_flow(broker: Mosquitto) -> None:
    col = Collector()
    raw = PayloadMapping(topic="plant/area1/co/raw", signal="co", unit="ppm", kind=PayloadKind.RAW)
    inp = make_input(broker, col, mappings=(O2, raw), report_interval_s=3600.0)
    sim = GasSensorSim(broker.url, topic="plant/area1/gas/cs-1/state", value=20.0, unit="%vol")
    bad = {
        "bad_json": b'{"value": 20.9',
        "wrong_type": sim.payload(Fault.WRONG_TYPE),
        "not_finite": sim.payload(Fault.NAN),
        "oversize": sim.payload(Fault.HUGE),
        "not_utf8": sim.payload(Fault.GARBAGE),
        "unit_mismatch": json.dumps({"value": 5, "unit": "ppm", "ts": time.time()}).encode(),
    }
    topic = "plant/area1/gas/cs-1/state"
    async with running(inp), publisher(broker) as pub:
        await wait_for(lambda: inp.connected, what="connected")
        for round_ in range(2):
            for i, payload in enumerate(bad.values()):
                sim.value = round_ * 100 + i
                await pub.publish(topic, sim.payload(), qos=1)
                await pub.publish(topic, payload, qos=1)
                await pub.publish("plant/area1/co/raw", b"nan" if i % 2 else f"{i}".encode(), qos=1)
        await wait_for(lambda: inp.received == 2 * 3 * len(bad), what="every message")
    # Every good value arrived, in order; none of the bad ones became a reading.
    assert [r.value for r in col.readings("o2")] == [float(v) for v in (*range(6), *range(100, 106))]
    assert [r.value for r in col.readings("co")] == [0.0, 2.0, 4.0] * 2
    # Counted exactly, per reason and per topic.
    assert dict(inp.rejected) == {reason: 2 for reason in bad} | {"not_finite": 2 + 6}
    assert inp.rejected_by_topic[(topic, "oversize")] == 2
    assert inp.rejected_by_topic[("plant/area1/co/raw", "not_finite")] == 6
    assert inp.accepted == 12 + 6
    # Rejected events are rate-limited per (topic, reason): one each here.
    rej = col.of(Rejected)
    assert sorted((e.source, e.reason) for e in rej) == sorted(
        [(f"mqtt:{topic}", reason) for reason in bad] + [("mqtt:plant/area1/co/raw", "not_finite")]
    )
    assert inp.connected is False  # after cancellation


async def test_rejection_reports_are_rate_limited_but_counts_are_exact(broker: Mosquitto) -> None:
    col = Collector()
    now = [1000.0]
    inp = make_input(broker, col, clock=lambda: now[0], report_interval_s=10.0)
    topic = "plant/area1/gas/cs-9/state"
    async with running(inp), publisher(broker) as pub:
        await wait_for(lambda: inp.connected, what="connected")
        for _ in range(3):
            await pub.publish(topic, b"{", qos=1)
        await wait_for(lambda: inp.received == 3, what="three")
        now[0] += 10.5
        await pub.publish(topic, b"{", qos=1)
        await wait_for(lambda: inp.received == 4, what="four")
    # O2 and LEL both map the topic: each refusal is counted once per mapping.
    assert inp.rejected["bad_json"] == 8
    details = [e.detail for e in col.of(Rejected)]
    assert len(details) == 2
    assert "(+5 more since the last report)" in details[1]


async def test_a_frozen_sensor_goes_stale_by_its_own_timestamp(broker: Mosquitto) -> None:
    col = Collector()
    o2 = PayloadMapping(topic="plant/area1/gas/+/state", signal="o2", unit="%vol", ts_path="ts", max_age_s=0.3)
    inp = make_input(broker, col, mappings=(o2,))
    sim = GasSensorSim(broker.url, topic="plant/area1/gas/cs-1/state", value=20.9, unit="%vol", interval_s=0.05)
    async with running(inp):
        await wait_for(lambda: inp.connected, what="connected")
        await sim.start()
        try:
            await wait_for(lambda: len(col.readings("o2")) >= 2, what="live readings")
            sim.fault = Fault.FREEZE  # the same bytes again and again, old timestamp included
            await wait_for(lambda: inp.rejected["stale"] >= 2, what="the repeats refused as stale")
        finally:
            await sim.stop()
    n = len(col.readings("o2"))
    assert inp.accepted == n


async def test_retained_and_stale_payloads_are_refused(broker: Mosquitto) -> None:
    col = Collector()
    raw = PayloadMapping(topic="plant/area1/co/raw", signal="co", unit="ppm", kind=PayloadKind.RAW)
    async with publisher(broker) as pub:
        # Retained before the gateway subscribes: delivered with the retain flag.
        await pub.publish("plant/area1/co/raw", b"12", qos=1, retain=True)
        fresh = {"value": 20.7, "unit": "%vol", "ts": time.time()}
        await pub.publish("plant/area1/gas/cs-1/state", json.dumps(fresh), qos=1, retain=True)
        inp = make_input(broker, col, mappings=(O2, raw))
        async with running(inp):
            await wait_for(lambda: inp.received == 2, what="the retained messages")
            old = {"value": 20.5, "unit": "%vol", "ts": time.time() - 60}
            ahead = {"value": 20.6, "unit": "%vol", "ts": time.time() + 60}
            ms = {"value": 20.4, "unit": "%vol", "ts": int(time.time() * 1000) - 2000}
            for doc in (old, ahead, ms):
                await pub.publish("plant/area1/gas/cs-1/state", json.dumps(doc), qos=1)
            await wait_for(lambda: inp.received == 5, what="three more")
    # The retained raw value has no age: refused. The retained JSON carries its own ts: used.
    assert [r.value for r in col.readings("o2")] == [20.7, 20.4]
    assert col.readings("co") == []
    assert (inp.rejected["retained"], inp.rejected["stale"], inp.rejected["future_timestamp"]) == (1, 1, 1)
    # 2 s old by its own clock: back-dated by about that much.
    assert col.readings("o2")[1].at < time.monotonic() - 1.5


async def test_espresense_sightings_become_sighting_events(broker: Mosquitto) -> None:
    col = Collector()
    ib = "iBeacon:e5ca1ade-f007-ba11-0000-000000000000-1-2"
    esp = EspresenseCfg(rooms={"boiler": "rx-boiler"}, badges={"irk:aa11": "badge-7"})
    inp = make_input(broker, col, mappings=(), espresense=esp)
    sim = EspresenseSim(broker.url, script={ib: {"boiler": -62.0, "corridor": -80.0}, "irk:aa11": {"boiler": -70}},
                        interval_s=0.05)
    async with running(inp):
        await wait_for(lambda: inp.connected, what="connected")
        await sim.start()
        try:
            await wait_for(lambda: len({(s.badge, s.receiver) for s in col.of(Sighting)}) == 3, what="3 pairs")
            sim.fault = Fault.WRONG_TYPE
            await wait_for(lambda: inp.rejected["wrong_type"] >= 3, what="bad sightings counted")
        finally:
            await sim.stop()
    pairs = {(s.badge, s.receiver, s.rssi) for s in col.of(Sighting)}
    assert pairs == {
        ("ibeacon:e5ca1ade-f007-ba11-0000-000000000000:1:2", "rx-boiler", -62.0),
        ("ibeacon:e5ca1ade-f007-ba11-0000-000000000000:1:2", "corridor", -80.0),
        ("badge-7", "rx-boiler", -70.0),
    }


async def test_waveform_frames_reach_on_waveform(broker: Mosquitto) -> None:
    col = Collector()
    wf = WaveformMapping(topic="plant/area1/vib/+/wave", signal="pump-1.vib")
    rms = rms_mapping("plant/area1/vib/pump-1/rms", "pump-1.vib_rms")
    inp = make_input(broker, col, mappings=(rms,), waveforms=(wf,), on_waveform=col.frames.append)
    sim = VibrationSensorSim(broker.url, waveform_topic="plant/area1/vib/pump-1/wave",
                             rms_topic="plant/area1/vib/pump-1/rms", tones=(Tone(80.0, 3.0),),
                             noise_rms=0.05, dc_offset=0.4, interval_s=0.05)
    async with running(inp):
        await wait_for(lambda: inp.connected, what="connected")
        await sim.start()
        try:
            await wait_for(lambda: len(col.frames) >= 2 and bool(col.readings("pump-1.vib_rms")), what="frames")
            sim.fault = Fault.NAN
            await wait_for(lambda: inp.rejected["not_finite"] >= 2, what="a NaN frame and a NaN RMS")
        finally:
            await sim.stop()
    frame = col.frames[0]
    assert (frame.signal, frame.sample_rate_hz, frame.samples.shape) == ("pump-1.vib", 8192.0, (8192,))
    assert float(np.mean(frame.samples)) == pytest.approx(0.4, abs=0.01)
    ac = frame.samples - frame.samples.mean()
    assert float(np.sqrt(np.mean(ac**2))) == pytest.approx(math.sqrt(3.0**2 / 2 + 0.05**2), rel=0.02)
    assert col.readings("pump-1.vib_rms")[0].value == pytest.approx(sim.expected_rms_mm_s(), rel=1e-3)
    assert sim.expected_rms_mm_s() == pytest.approx(3.0 / (2 * math.pi * 80) / math.sqrt(2) * 1000)


async def test_survives_a_broker_restart_and_resumes(broker: Mosquitto) -> None:
    col = Collector()
    inp = make_input(broker, col)
    sim = GasSensorSim(broker.url, topic="plant/area1/gas/cs-1/state", value=20.9, unit="%vol", interval_s=0.05)
    async with running(inp):
        await sim.start()
        try:
            await wait_for(lambda: len(col.readings("o2")) >= 2, what="readings before")
            await asyncio.to_thread(broker.restart)
            await wait_for(lambda: inp.reconnects >= 1 and inp.connected, what="reconnected")
            sim.value = 18.5
            await wait_for(lambda: any(r.value == 18.5 for r in col.readings("o2")), what="readings after")
        finally:
            await sim.stop()
    statuses = [(s.up, bool(s.reason)) for s in col.of(DeviceStatus)]
    assert statuses[:3] == [(True, False), (False, True), (True, False)]


async def test_starts_while_the_broker_is_down(broker: Mosquitto) -> None:
    col = Collector()
    inp = make_input(broker, col)
    broker.stop()
    async with running(inp):
        # Let it fail a few times (bounded by time); it must keep trying, not raise.
        with pytest.raises(TimeoutError):
            await wait_for(lambda: inp.connected, timeout=0.5)
        await asyncio.to_thread(broker.restart)
        await wait_for(lambda: inp.connected, what="connected once the broker is up")
    assert col.of(DeviceStatus) == [DeviceStatus(device="mqtt", up=True)]


def _pki(d: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    now = datetime.now(UTC)

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
             *, ca: bool, san: x509.GeneralName | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        return b.sign(signer, hashes.SHA256())

    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    srv_key, cli_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    srv = cert("127.0.0.1", srv_key, ca_name, ca_key, ca=False,
               san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cli = cert("gw-test", cli_key, ca_name, ca_key, ca=False)
    for name, obj in (("ca", ca), ("srv", srv), ("cli", cli)):
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    for name, key in (("srv_key", srv_key), ("cli_key", cli_key)):
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return out


async def test_mutual_tls(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    tls_port = free_port()
    # Started as root, mosquitto drops to user "mosquitto", who cannot read pytest's 0700 tmp_path.
    me = pwd.getpwuid(os.getuid()).pw_name
    conf = (f"user {me}\nlistener {tls_port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['srv']}\n"
            f"keyfile {pki['srv_key']}\nrequire_certificate true\n")
    with mosquitto(conf) as broker:
        wait_port(tls_port)
        col = Collector()
        good = TlsOptions(ca_path=str(pki["ca"]), cert_path=str(pki["cli"]), key_path=str(pki["cli_key"]))
        inp = MqttInput(f"mqtts://127.0.0.1:{tls_port}", client_id="gw-tls", emit=col.emit, backoff=FAST,
                        mappings=(O2,), tls=good)
        # Without a client certificate the broker refuses the handshake: never connected, never raises.
        col_nocert = Collector()
        nocert = MqttInput(f"mqtts://127.0.0.1:{tls_port}", client_id="gw-nocert", emit=col_nocert.emit,
                           backoff=FAST, mappings=(O2,), tls=TlsOptions(ca_path=str(pki["ca"])))
        async with running(inp), running(nocert), publisher(broker) as pub:
            await wait_for(lambda: inp.connected, what="connected over mutual TLS")
            doc = {"value": 20.1, "unit": "%vol", "ts": time.time()}
            await pub.publish("plant/area1/gas/cs-1/state", json.dumps(doc), qos=1)  # plain listener
            await wait_for(lambda: len(col.readings("o2")) == 1, what="a reading over TLS")
            assert not nocert.connected
        assert col_nocert.events == []
        assert col.readings("o2")[0].value == 20.1


# -- configuration (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:18830", ("127.0.0.1", 18830, False)),
        ("mqtt://broker.local", ("broker.local", 1883, False)),
        ("mqtts://broker.local", ("broker.local", 8883, True)),
        ("mqtts://[::1]:8884/", ("::1", 8884, True)),
    ],
)
def test_parse_url(url: str, expected: tuple[str, int, bool]) -> None:
    a = parse_url(url)
    assert (a.host, a.port, a.tls) == expected


@pytest.mark.parametrize(
    "url", ["http://h", "mqtt://", "mqtt://u:p@h", "mqtt://h:notaport", "mqtt://h/topic", "tcp://h:1883"]
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(MqttConfigError, match=r"mqtt_in\.url"):
        parse_url(url)


def _ctor(**kw: Any) -> Callable[[], MqttInput]:
    base: dict[str, Any] = {"client_id": "gw", "emit": lambda e: None}
    url = kw.pop("url", "mqtt://127.0.0.1:1")
    return lambda: MqttInput(url, **{**base, **kw})


@pytest.mark.parametrize(
    ("ctor", "place"),
    [
        (_ctor(tls=TlsOptions()), "mqtt_in.tls"),
        (_ctor(url="mqtts://h", tls=TlsOptions(ca_path="/nonexistent/ca.pem")), "mqtt_in.tls"),
        (_ctor(password="x"), "mqtt_in.password"),
        (_ctor(client_id=""), "mqtt_in.client_id"),
        (_ctor(mappings=(O2, O2)), "mqtt_in.mappings"),
        (_ctor(waveforms=(WaveformMapping(topic="t", signal="w"),)), "mqtt_in.waveforms"),
    ],
)
def test_config_errors(ctor: Callable[[], MqttInput], place: str) -> None:
    with pytest.raises(MqttConfigError, match=re.escape(place)):
        ctor()


def test_subscriptions_take_the_highest_qos_per_filter() -> None:
    telemetry = PayloadMapping(topic="plant/area1/gas/+/state", signal="temp", unit="degC", qos=0)
    inp = _ctor(mappings=(telemetry, O2), espresense=EspresenseCfg(prefix="site/esp"))()
    assert inp.subscriptions() == [("plant/area1/gas/+/state", 1), ("site/esp/devices/+/+", 0)]


@pytest.mark.parametrize(
    ("attempt", "rnd", "expected"),
    [(0, 0.0, 0.25), (0, 0.999999, 0.5), (1, 0.0, 0.5), (3, 0.0, 2.0), (10, 0.0, 15.0), (10_000, 0.5, 22.5)],
)
def test_backoff(attempt: int, rnd: float, expected: float) -> None:
    assert Backoff(initial_s=0.5, max_s=30.0).delay(attempt, rnd) == pytest.approx(expected, rel=1e-5)

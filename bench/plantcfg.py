"""The benchmark's plant: a TOML configuration generated for the ports of this run.

Zones and outputs (relay coils, de-energized = safe):

* ``tank-m`` (confined space): a Modbus TCP four-gas detector polled every `poll_s`;
  its gas permissive is coil 0. Tripped by H2S alarm 1 (5 ppm, non-latching in the
  OSHA profile, so the permissive comes back without an acknowledgement).
* ``tank-q`` (confined space): one MQTT-push H2S sensor; its gas permissive is coil 1.
* ``load-NN`` (general): `signals` temperature signals fed over MQTT by the load
  generator (topic ``bench/load/{i}``, JSON ``{"value": ...}``); no outputs.
* ``badges`` people and BLE badges (config only: nothing sends sightings here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.tomlw import dumps

GAS_COIL, MQTT_COIL = 0, 1
MQTT_GAS_TOPIC = "bench/gas/q_h2s"
LOAD_TOPIC = "bench/load/{i}"
SITE, GATEWAY = "bench-plant", "gw-bench"
LOAD_PER_ZONE = 50


@dataclass(frozen=True)
class Ports:
    gas: int
    relay: int
    mqtt: int
    http: int


def alarm_topic(zone: str, signal: str) -> str:
    return f"edge/{SITE}/{GATEWAY}/alarm/{zone}/{signal}"


def raw_config(ports: Ports, state_dir: Path, *, poll_s: float, signals: int, badges: int,
               tsdb_url: str = "", permits_dir: Path | None = None) -> dict[str, Any]:
    """The configuration as a TOML-shaped dict."""
    zones: list[dict[str, Any]] = [
        {"id": "tank-m", "kind": "confined_space", "name": "Tank M (Modbus detector)"},
        {"id": "tank-q", "kind": "confined_space", "name": "Tank Q (MQTT sensor)"},
    ]
    nzones = (signals + LOAD_PER_ZONE - 1) // LOAD_PER_ZONE
    zones += [{"id": f"load-{z:02d}", "kind": "general"} for z in range(nzones)]
    gas_points = [
        {"signal": f"m_{q}", "address": a, "type": "int16", "scale": 0.1}
        for q, a in (("o2", 1), ("lel", 2), ("h2s", 3), ("co", 4))
    ]
    devices: list[dict[str, Any]] = [
        {
            "id": "gas-m", "transport": "modbus_tcp", "host": "127.0.0.1", "port": ports.gas, "unit_id": 1,
            "poll_s": poll_s, "timeout_s": 0.3,
            "status": {"address": 0, "bump_address": 10, "calibration_address": 12},
            "points": gas_points,
        },
        {
            "id": "relay-1", "transport": "modbus_tcp", "host": "127.0.0.1", "port": ports.relay, "unit_id": 1,
            "poll_s": 1.0, "timeout_s": 0.3,
            "watchdog": {"heartbeat_register": 0, "timeout_register": 1, "clear_register": 2, "timeout_ms": 1000},
        },
        {
            "id": "gas-q", "transport": "mqtt", "poll_s": 0.2,
            "points": [{"signal": "q_h2s", "topic": MQTT_GAS_TOPIC, "json_path": "value"}],
        },
    ]
    if signals:
        devices.append({
            "id": "load", "transport": "mqtt", "poll_s": 1.0,
            "points": [{"signal": f"load_{i}", "topic": LOAD_TOPIC.format(i=i), "json_path": "value"}
                       for i in range(signals)],
        })
    units = {"o2": "%vol", "lel": "%LEL", "h2s": "ppm", "co": "ppm"}
    sigs: list[dict[str, Any]] = [
        {"id": f"m_{q}", "quantity": q, "unit": u, "zone": "tank-m"} for q, u in units.items()
    ]
    sigs.append({"id": "q_h2s", "quantity": "h2s", "unit": "ppm", "zone": "tank-q"})
    # Load signals: stale after 300 s so that the pauses between load phases do not
    # turn 500 signals into latched faults (that would measure fault handling, not load).
    sigs += [
        {"id": f"load_{i}", "quantity": "temperature", "unit": "degC",
         "zone": f"load-{i // LOAD_PER_ZONE:02d}", "stale_after_s": 300.0}
        for i in range(signals)
    ]
    outputs = [
        {"id": "m_permissive", "device": "relay-1", "coil": GAS_COIL, "kind": "gas_permissive", "zone": "tank-m"},
        {"id": "q_permissive", "device": "relay-1", "coil": MQTT_COIL, "kind": "gas_permissive", "zone": "tank-q"},
    ]
    raw: dict[str, Any] = {
        "site": {"id": SITE, "gateway_id": GATEWAY, "profile": "osha"},
        "engine": {"tick_s": 0.1, "silence_s": 60},
        "zones": zones,
        "devices": devices,
        "signals": sigs,
        "outputs": outputs,
    }
    if badges:
        raw["people"] = [{"id": f"p{i:04d}", "name": f"Worker {i}"} for i in range(badges)]
        raw["badges"] = [
            {"beacon": f"ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:100:{i}", "person": f"p{i:04d}"}
            for i in range(badges)
        ]
    raw["mqtt"] = {"url": f"mqtt://127.0.0.1:{ports.mqtt}", "prefix": "edge"}
    raw["status"] = {"bind": "127.0.0.1", "port": ports.http}
    raw["state"] = {"dir": str(state_dir)}
    if tsdb_url:
        raw["tsdb"] = {"url": tsdb_url}
    if permits_dir is not None:
        n = len(list(permits_dir.glob("*.json")))
        raw["zones"] += [{"id": f"hw-{i:02d}", "kind": "hot_work"} for i in range(n)]
        raw["ledger"] = {"public_key_file": str(permits_dir / "ledger.pub")}
        raw["permits"] = {"dir": str(permits_dir)}
    return raw


def write_permits(folder: Path, n: int, people: int) -> Path:
    """`n` active hot-work permits (zones hw-00..), signed by a fresh ledger key whose public half is
    `folder/ledger.pub`; two of the configured people on each (an operator and a fire watch)."""
    import json
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drivers.ledger.permit_codec import sign_permit
    from firmware_sim.permits import approval, competency, gas_test, permit_doc, person

    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    (folder / "ledger.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    now = time.time()
    for i in range(n):
        op, watch = f"p{(2 * i) % max(people, 1):04d}", f"p{(2 * i + 1) % max(people, 1):04d}"
        body = permit_doc(
            f"HW-{i:02d}", f"hw-{i:02d}", site_id=SITE, valid_from=now - 600, valid_to=now + 8 * 3600,
            people=[person(op, "operator"), person(watch, "fire_watch"),
                    person("p0000" if op != "p0000" else "p0001", "issuer")],
            gas_tests=[gas_test(now - 300, op, bump_at=now - 3600, cal_due=now + 30 * 86400)],
            approvals=[approval(op, now - 900)],
            competencies=[competency(op, f"HW-C-{i}", now + 86400)],
        )
        (folder / f"HW-{i:02d}.json").write_text(json.dumps(sign_permit(body, key)))
    return folder


def write(path: Path, ports: Ports, state_dir: Path, *, poll_s: float, signals: int, badges: int,
          tsdb_url: str = "", permits_dir: Path | None = None) -> Path:
    path.write_text(dumps(raw_config(ports, state_dir, poll_s=poll_s, signals=signals, badges=badges,
                                     tsdb_url=tsdb_url, permits_dir=permits_dir)))
    return path

"""`edge-gateway demo`: a whole simulated plant, the gateway, and its status page.

Needs no system package: the simulators are pymodbus servers in this process, and when
no broker answers on --mqtt-port an embedded one (amqtt) is started there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import structlog

from firmware_sim.modbus_devices import GasDetectorSim, RelayModuleSim, TemperatureTransmitterSim
from firmware_sim.mqtt_sensors import Tone, VibrationSensorSim
from firmware_sim.scenario import SCENARIOS, Plant, play
from gateway.config import ConfigError, GatewayConfig
from gateway.core.clock import iso
from rules.events import Ack

log = structlog.get_logger("demo")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.toml"


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


async def _port_open(port: int) -> bool:
    try:
        async with asyncio.timeout(0.5):
            _, w = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError):
        return False
    w.close()
    await w.wait_closed()
    return True


async def _embedded_broker(port: int):  # type: ignore[no-untyped-def]
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    return broker


def _rewire(cfg: GatewayConfig, ports: dict[str, int], http_port: int, mqtt_port: int, state: Path) -> GatewayConfig:
    devices = tuple(d.model_copy(update={"port": ports[d.id]}) if d.id in ports else d for d in cfg.devices)
    return cfg.model_copy(
        update={
            "devices": devices,
            "mqtt": cfg.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{mqtt_port}"}),
            "status": cfg.status.model_copy(update={"port": http_port}),
            "state": cfg.state.model_copy(update={"dir": state}),
        }
    )


async def demo(args: argparse.Namespace) -> int:
    from gateway.app.daemon import Daemon
    from gateway.config.loader import load

    if args.scenario not in SCENARIOS:
        print(f"--scenario: unknown {args.scenario!r}; use one of {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    path = args.config or DEFAULT_CONFIG
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sims: dict[str, GasDetectorSim | RelayModuleSim | TemperatureTransmitterSim] = {}
    now = int(time.time())
    for d in cfg.devices:
        if d.transport != "modbus_tcp":
            continue
        loops = [p.current_loop for p in d.points if p.current_loop]
        if d.watchdog:
            sims[d.id] = RelayModuleSim(n=8)
        elif loops:
            sims[d.id] = TemperatureTransmitterSim(ranges=(loops[0],))
        else:
            # Detectors bump-tested an hour ago and calibrated a month ago (an overdue one blocks hot work).
            sims[d.id] = GasDetectorSim(bump_utc_s=now - 3600, calibration_utc_s=now - 30 * 86400)
    broker = None
    vib: VibrationSensorSim | None = None
    try:
        for sim in sims.values():
            await sim.start()
            if isinstance(sim, TemperatureTransmitterSim):
                sim.set_value("t0", 72.0)  # a warm, healthy winding
        if await _port_open(args.mqtt_port):
            _say(f"using the MQTT broker already listening on 127.0.0.1:{args.mqtt_port}")
        else:
            broker = await _embedded_broker(args.mqtt_port)
            _say(f"started an embedded MQTT broker (amqtt) on 127.0.0.1:{args.mqtt_port}")
        waveform = next((p for d in cfg.devices if d.transport == "mqtt" for p in d.points if p.waveform), None)
        if waveform is not None and waveform.topic:
            # 1.0 mm/s RMS at 25 Hz: ISO zone A. (acceleration peak = v_rms * sqrt(2) * 2 * pi * f)
            vib = VibrationSensorSim(
                f"mqtt://127.0.0.1:{args.mqtt_port}", waveform_topic=waveform.topic, tones=(Tone(25.0, 0.222),)
            )
            await vib.start()
        with tempfile.TemporaryDirectory(prefix="edge-demo-") as state:
            cfg = _rewire(cfg, {k: s.port for k, s in sims.items()}, args.http_port, args.mqtt_port, Path(state))
            daemon = Daemon(cfg, base=path.parent, config_hash="demo")
            gas = {k: s for k, s in sims.items() if isinstance(s, GasDetectorSim)}

            def ack(zone: str) -> None:
                daemon.inbox.put(Ack("*", "demo-operator", "operator", iso(daemon.clock.utc()), zone))

            temps = [x for x in sims.values() if isinstance(x, TemperatureTransmitterSim)]
            plant = Plant(gas=gas, ack=ack, vibration=vib, temperature=temps[0] if temps else None)
            daemon.extra_tasks.append(
                (f"scenario[{args.scenario}]", lambda: play(args.scenario, plant, _say, time.monotonic))
            )
            relays = [s for s in sims.values() if isinstance(s, RelayModuleSim)]
            names = {(o.device, o.coil): o.id for o in cfg.outputs}
            daemon.extra_tasks.append(("demo[relay_watch]", lambda: _watch_relays(relays, sims, names)))
            base = f"http://127.0.0.1:{args.http_port}"
            _say(f"status page: {base}/   JSON: {base}/api/state   live: {base}/api/events")
            _say(
                f"MQTT: mosquitto_sub -h 127.0.0.1 -p {args.mqtt_port} -t 'edge/#' -v   "
                f"(alarms are retained under {cfg.mqtt.prefix}/{cfg.site.id}/{cfg.site.gateway_id}/alarm/...)"
            )
            _say(
                f"scenario {args.scenario!r} loops until Ctrl-C" + (f" or {args.duration:g} s" if args.duration else "")
            )
            return await daemon.run(args.duration)
    finally:
        if vib is not None:
            await vib.stop()
        for sim in sims.values():
            await sim.stop()
        if broker is not None:
            await broker.shutdown()


async def _watch_relays(relays: list[RelayModuleSim], sims: dict, names: dict[tuple[str, int], str]) -> None:  # type: ignore[type-arg]
    """Narrate what the plant's relay module really does (observed at the module, not at the gateway)."""
    ids = {id(s): k for k, s in sims.items()}
    seen = {id(r): 0 for r in relays}
    while True:
        for r in relays:
            changes = r.changes[seen[id(r)] :]
            seen[id(r)] += len(changes)
            for c in changes:
                name = names.get((ids[id(r)], c.coil), f"coil {c.coil}")
                _say(f"relay module: {name} -> {'ENERGIZED' if c.value else 'de-energized'} ({c.cause})")
        await asyncio.sleep(0.2)


def run_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(demo(args))
    except KeyboardInterrupt:
        return 0

"""The field side of the bench, in its own process: gas detector, relay module, MQTT gas sensor.

    python -m bench.simhost --mqtt-port P

Starts a GasDetectorSim and a RelayModuleSim (Modbus TCP on free 127.0.0.1 ports) and a
push H2S sensor publishing ``{"value": v, "ts": epoch}`` to `MQTT_GAS_TOPIC` every 0.2 s
(and at once on a change), subscribes to the gateway's alarm topics, prints
``{"gas_port": .., "relay_port": ..}`` and then answers JSON-line commands on stdin:

* ``{"cmd": "energize"}``: every relay coil on (so the gateway's safe writes show as transitions).
* ``{"cmd": "changes"}``: coil transitions since start, ``[[at, coil, value, cause], ...]``.
* ``{"cmd": "trips", "path": "modbus"|"mqtt", "n": N, "max_s": S}``: N trips of H2S alarm 1;
  each sets 7 ppm, waits for the permissive coil to drop, sets 0 ppm, waits for it to come
  back, then pauses a random 20-80 ms so trips do not phase-lock with the poll.
  Latency = coil drop time - time of the value change, both ``time.monotonic()`` in this
  process; the retained alarm message's arrival is timed the same way.
* ``{"cmd": "quit"}``.

Every wait is bounded; a trip whose coil did not move within 2 s counts as `missed`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from typing import Any

from bench.plantcfg import GAS_COIL, MQTT_COIL, MQTT_GAS_TOPIC, alarm_topic
from bench.rawmqtt import connect_packet, publish_packet
from drivers.mqtt_in.wire import Connection, WireError
from firmware_sim.modbus_devices import GasDetectorSim, RelayModuleSim

TRIP_PPM, CLEAR_PPM = 7.0, 0.0
WAIT_S = 2.0


class Field:
    def __init__(self, mqtt_port: int) -> None:
        self.gas = GasDetectorSim()
        self.relay = RelayModuleSim(n=8)
        self.mqtt_port = mqtt_port
        self.q_value = CLEAR_PPM
        self.alarms: list[tuple[float, str, str]] = []
        """(arrival monotonic, signal, severity) of every alarm message."""
        self._changed = asyncio.Event()
        self._connected = asyncio.Event()

    async def start(self) -> None:
        await self.gas.start()
        await self.relay.start()

    async def mqtt(self) -> None:
        """Subscriber of the gateway's alarms and the push sensor, both on lean clients (the gateway's own
        input protocol, a raw socket), reconnecting. An aiomqtt client sharing this process's loop and
        core added 3-20 ms to one message in five (seen in its PUBACK times): that is the simulator."""
        while True:
            try:
                c = await Connection.open("127.0.0.1", self.mqtt_port, client_id="bench-field", keepalive_s=30)
                try:
                    await c.subscribe([(alarm_topic("+", "+"), 1)])
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.mqtt_port)
                    try:
                        writer.transport.get_extra_info("socket").setsockopt(
                            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        writer.write(connect_packet("bench-push-sensor"))
                        await reader.readexactly(4)  # CONNACK
                        self._connected.set()
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._publish_loop(writer))
                            tg.create_task(self._alarm_loop(c))
                            tg.create_task(_discard(reader))
                    finally:
                        writer.close()
                finally:
                    c.close()
            except* (WireError, OSError, asyncio.IncompleteReadError):
                self._connected.clear()
                await asyncio.sleep(0.2)

    async def _publish_loop(self, w: asyncio.StreamWriter) -> None:
        while True:
            self._changed.clear()
            self.publish_q(w)
            try:
                async with asyncio.timeout(0.2):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def publish_q(self, w: asyncio.StreamWriter) -> None:
        """One reading, QoS 0, written to the socket at once: the sensor adds no delay of its own.
        (An aiomqtt publisher sharing this process's loop and core added 3-20 ms to one trip in
        five, measured from its PUBACK times: that is the simulator, not the gateway.)"""
        body = json.dumps({"value": self.q_value, "unit": "ppm", "ts": time.time()}).encode()
        w.write(publish_packet(MQTT_GAS_TOPIC, body))

    async def _alarm_loop(self, c: Connection) -> None:
        while True:
            for m in await c.batch(64):
                self._alarm(m.payload)

    def _alarm(self, payload: bytes) -> None:
        at = time.monotonic()
        try:
            doc = json.loads(payload)
            self.alarms.append((at, str(doc.get("signal")), str(doc.get("severity"))))
        except (ValueError, TypeError, AttributeError):
            pass

    def _set(self, path: str, value: float) -> float:
        at = time.monotonic()
        if path == "modbus":
            self.gas.set_value("h2s", value)
        else:
            self.q_value = value
            self._changed.set()  # the publish loop sends at once
        return at

    async def _wait_coil(self, coil: int, value: bool, since_index: int, within_s: float) -> float | None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for ch in self.relay.changes[since_index:]:
                if ch.coil == coil and ch.value == value:
                    return ch.at
            await asyncio.sleep(0.001)  # polls the sim's change log; its timestamps, not this loop, give latency
        return None

    async def trips(self, path: str, n: int, max_s: float) -> dict[str, Any]:
        coil = GAS_COIL if path == "modbus" else MQTT_COIL
        signal = "m_h2s" if path == "modbus" else "q_h2s"
        async with asyncio.timeout(10):
            await self._connected.wait()
        self._set(path, CLEAR_PPM)
        # The permissive must be energized before the first trip (fresh good gas, outputs written).
        deadline = time.monotonic() + 15
        while not self.relay.bit("coil", coil):
            if time.monotonic() > deadline:
                return {"error": f"coil {coil} never energized: is the gateway running and its gas good?"}
            await asyncio.sleep(0.01)
        relay_ms: list[float] = []
        alarm_ms: list[float] = []
        missed = 0
        stop_at = time.monotonic() + max_s
        for _ in range(n):
            if time.monotonic() > stop_at:
                break
            idx, aidx = len(self.relay.changes), len(self.alarms)
            t0 = self._set(path, TRIP_PPM)
            t1 = await self._wait_coil(coil, False, idx, WAIT_S)
            if t1 is None:
                missed += 1
            else:
                relay_ms.append((t1 - t0) * 1000)
            ta = next((a for a, s, sev in self.alarms[aidx:] if s == signal and sev != "normal"), None)
            if ta is None:
                await asyncio.sleep(0.05)
                ta = next((a for a, s, sev in self.alarms[aidx:] if s == signal and sev != "normal"), None)
            if ta is not None:
                alarm_ms.append((ta - t0) * 1000)
            idx = len(self.relay.changes)
            self._set(path, CLEAR_PPM)
            if await self._wait_coil(coil, True, idx, WAIT_S + 1) is None:
                return {"error": "permissive did not come back after clearing", "relay_ms": relay_ms,
                        "alarm_ms": alarm_ms, "missed": missed}
            await asyncio.sleep(random.uniform(0.02, 0.08))
        return {"relay_ms": relay_ms, "alarm_ms": alarm_ms, "missed": missed}


async def _discard(r: asyncio.StreamReader) -> None:
    while await r.read(4096):
        pass
    raise OSError("push sensor connection closed by the broker")


def _out(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def amain(mqtt_port: int) -> None:
    f = Field(mqtt_port)
    await f.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    mq = asyncio.create_task(f.mqtt(), name="field-mqtt")
    _out({"gas_port": f.gas.port, "relay_port": f.relay.port})
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            match cmd.get("cmd"):
                case "energize":
                    for i in range(f.relay.n):
                        f.relay._set_coil(i, True, "bench")  # a module left energized before a restart
                    _out({"ok": True, "at": time.monotonic()})
                case "changes":
                    _out({"changes": [[c.at, c.coil, c.value, c.cause] for c in f.relay.changes]})
                case "trips":
                    _out(await f.trips(cmd["path"], int(cmd["n"]), float(cmd.get("max_s", 120))))
                case "quit":
                    break
                case other:
                    _out({"error": f"unknown command {other!r}"})
    finally:
        mq.cancel()
        await asyncio.gather(mq, return_exceptions=True)
        await f.gas.stop()
        await f.relay.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.simhost")
    p.add_argument("--mqtt-port", type=int, required=True)
    a = p.parse_args(argv)
    asyncio.run(amain(a.mqtt_port))


if __name__ == "__main__":
    main()

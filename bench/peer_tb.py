"""The same MQTT-in -> MQTT-out workload through ThingsBoard IoT Gateway, for comparison.

thingsboard-gateway is installed from PyPI into its own venv under the cache directory
(`$BENCH_CACHE`, default ~/.cache/edge-bench) on first use. Its MQTT connector subscribes
to the load topics on the bench's mosquitto and converts each JSON reading to telemetry;
its "ThingsBoard" uplink is pointed at the same mosquitto (anonymous, any token), where a
sink counts the readings inside `v1/gateway/telemetry` batches. It runs pinned to core 0
like our daemon. A rate counts as sustained when >= 95 % of the offered readings arrive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.procs import DAEMON_CPU, BenchError, Gen, Sink, cpu_s, pinned, stop_pid
from bench.rawmqtt import Reader, connect, publish_packet, subscribe

TB_VERSION = "3.8.5"
SUSTAIN = 0.95
_LAUNCH = (
    "import thingsboard_gateway.tb_utility.tb_updater as u\n"
    "u.TBUpdater.check_for_new_version = lambda self: None\n"
    "from thingsboard_gateway.tb_gateway import daemon\n"
    "daemon()\n"
)


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "edge-bench"))


def ensure_venv() -> Path:
    venv = cache_dir() / "tb-venv"
    exe = venv / "bin" / "thingsboard-gateway"
    if exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"thingsboard-gateway=={TB_VERSION}"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not exe.exists():
        raise BenchError("peer_tb", f"pip install thingsboard-gateway=={TB_VERSION} failed: {r.stderr[-500:]}")
    return exe


def write_config(conf: Path, mqtt_port: int) -> None:
    conf.mkdir(parents=True, exist_ok=True)
    default = next((cache_dir() / "tb-venv" / "lib").glob("python3*/site-packages/thingsboard_gateway/config"))
    logs = json.loads((default / "logs.json").read_text())
    for h in logs.get("handlers", {}).values():
        if "filename" in h:
            h["filename"] = str(conf / "logs" / Path(h["filename"]).name)
        h["level"] = os.environ.get("TBLOG", "WARNING")
    for lg in logs.get("loggers", {}).values():
        lg["level"] = os.environ.get("TBLOG", "WARNING")
    (conf / "logs").mkdir(exist_ok=True)
    (conf / "logs.json").write_text(json.dumps(logs))
    gw = {
        "thingsboard": {
            "host": "127.0.0.1", "port": mqtt_port, "remoteShell": False, "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 8196, "minPackSendDelayMS": 50, "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60, "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"}, "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "rateLimits": "0:0,", "dpRateLimits": "0:0,", "messagesRateLimits": "0:0,",
            "deviceMessagesRateLimits": "0:0,", "deviceRateLimits": "0:0,", "deviceDpRateLimits": "0:0,",
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 1_000_000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "bench-mqtt", "configuration": "mqtt.json"}],
    }
    (conf / "tb_gateway.json").write_text(json.dumps(gw, indent=1))
    mqtt = {
        "broker": {"host": "127.0.0.1", "port": mqtt_port, "clientId": "tb-gateway-bench-in", "version": 5,
                   "maxMessageNumberPerWorker": 10, "maxNumberOfWorkers": 100, "cleanSession": True,
                   "cleanStart": True, "sessionExpiryInterval": 0, "security": {"type": "anonymous"}},
        "mapping": [{
            "topicFilter": "bench/load/+", "subscriptionQos": 0,
            "converter": {
                "type": "json",
                "deviceInfo": {"deviceNameExpressionSource": "topic", "deviceNameExpression": "(?<=bench/load/)(.*)",
                               "deviceProfileExpressionSource": "constant", "deviceProfileExpression": "default"},
                "sendDataOnlyOnChange": False, "timeout": 60000, "attributes": [],
                "timeseries": [{"type": "double", "key": "value", "value": "${value}"}],
            },
        }],
        "requestsMapping": {},
    }
    (conf / "mqtt.json").write_text(json.dumps(mqtt, indent=1))


_LIMITS = json.dumps({
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "maxInflightMessages": 1000, "maxPayloadSize": 65536,
}).encode()


def _platform_stub(mqtt_port: int, stop: threading.Event) -> None:
    """Answers the gateway's `getSessionLimits` RPC as a ThingsBoard server would (no limits).

    Without an answer the TB gateway never counts itself connected and sends nothing.
    """
    sock = connect(mqtt_port, "bench-tb-platform-stub")
    subscribe(sock, "v1/devices/me/rpc/request/+")
    sock.settimeout(0.2)

    def on_publish(topic: bytes, payload: bytes) -> None:
        if b"getSessionLimits" in payload:
            rid = topic.rsplit(b"/", 1)[-1].decode()
            sock.sendall(publish_packet(f"v1/devices/me/rpc/response/{rid}", _LIMITS))

    reader = Reader(on_publish)
    try:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            reader.feed(data)
    finally:
        sock.close()


def _measure(mqtt_port: int, pid: int, rate: int, secs: float, signals: int) -> dict[str, Any]:
    sink = Sink(mqtt_port, "v1/gateway/telemetry", secs + 30, tb=True)
    c0, t0 = cpu_s(pid), time.monotonic()
    g = Gen(mqtt_port, rate, secs, signals).result()
    c1, t1 = cpu_s(pid), time.monotonic()
    # Readings still in flight get a short tail (TB packs and sends every 50 ms).
    time.sleep(2.0)
    sk = sink.result()
    delivered = sk["readings"]
    return {"offered": rate, "sent": g["sent"], "delivered": delivered,
            "readings_per_s": round(min(delivered, g["sent"]) / g["seconds"], 1),
            "cpu_pct": round((c1 - c0) / (t1 - t0) * 100, 1),
            "sustained": delivered >= SUSTAIN * g["sent"]}


def peer_section(work: Path, mqtt_port: int, ladder: tuple[int, ...], step_s: float, signals: int) -> dict[str, Any]:
    try:
        exe = ensure_venv()
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        return {"peer_tb_readings_per_s": None, "peer_tb_error": f"cannot install thingsboard-gateway: {exc}"}
    conf = work / "tb"
    write_config(conf, mqtt_port)
    log = (work / "tb-gateway.log").open("ab")
    stop = threading.Event()
    stub = threading.Thread(target=_platform_stub, args=(mqtt_port, stop), daemon=True)
    stub.start()
    # Its updater calls https://updates.thingsboard.io at start: patched out (only 127.0.0.1 is a
    # target here), and any other HTTP(S) it might try goes to a dead local proxy.
    env = dict(os.environ, TB_GW_CONFIG_DIR=str(conf) + "/", HTTP_PROXY="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    py = exe.parent / "python"
    proc = subprocess.Popen(pinned(DAEMON_CPU, [str(py), "-c", _LAUNCH]), cwd=conf, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        # Warm-up: bounded, until readings come out the far side.
        deadline = time.monotonic() + 90
        warm: dict[str, Any] = {"delivered": 0}
        while time.monotonic() < deadline and proc.poll() is None:
            warm = _measure(mqtt_port, proc.pid, 200, 2.0, signals)
            if warm["delivered"] > 0:
                break
        if proc.poll() is not None or not warm["delivered"]:
            return {"peer_tb_readings_per_s": None, "peer_tb_error": "thingsboard-gateway delivered no reading within "
                    f"90 s (exit {proc.poll()}; see {work / 'tb-gateway.log'})"}
        # A second warm-up at a moderate rate, not counted: started straight from 200/s at 5,000/s
        # or more for 12 s it delivered almost nothing (twice, not diagnosed); after 3 s at
        # 2,000/s it climbed to 40,000/s (docs/performance.md).
        warm2 = _measure(mqtt_port, proc.pid, 2_000, 3.0, signals)
        steps, best = [], None
        for rate in ladder:
            st = _measure(mqtt_port, proc.pid, rate, step_s, signals)
            steps.append(st)
            if not st["sustained"]:
                break
            best = st
        return {"peer_tb_readings_per_s": best["readings_per_s"] if best else 0.0,
                "peer_tb_cpu_pct": best["cpu_pct"] if best else None, "peer_tb_version": TB_VERSION,
                "peer_tb_ladder": steps, "peer_tb_warmup": warm2}
    finally:
        stop_pid(proc, timeout=15)
        stop.set()
        stub.join(5)
        log.close()
        shutil.rmtree(conf / "data", ignore_errors=True)

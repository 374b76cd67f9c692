"""Load generator and counting sink, each run as its own process.

    python -m bench.mqttload gen  --port P --rate R --seconds S --signals N [--topic T]
    python -m bench.mqttload sink --port P --filter F --seconds S [--tb]

`gen` publishes QoS 0 JSON readings ``{"value": 25.x}`` round-robin over N topics at R
messages/s, paced in 5 ms slices, for S seconds; it prints one JSON line with what it
really sent. `sink` subscribes to F and counts PUBLISH packets (and, with --tb, the
readings inside ThingsBoard gateway-API batches ``{"dev": [{"ts":..,"values":{..}}]}``)
until S seconds pass or SIGTERM; it prints one JSON line with counts per second.
"""

from __future__ import annotations

import argparse
import json
import signal
import time

from bench.rawmqtt import Reader, connect, publish_packet, subscribe

SLICE_S = 0.005


def gen(port: int, rate: float, seconds: float, signals: int, topic: str) -> dict[str, object]:
    sock = connect(port, f"bench-gen-{time.monotonic_ns()}")
    packets = [
        publish_packet(topic.format(i=i), json.dumps({"value": 25.0 + (i % 10) / 10}).encode())
        for i in range(signals)
    ]
    sent = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    idx = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        due = int((now - t0) * rate) - sent
        if due > 0:
            batch = []
            for _ in range(due):
                batch.append(packets[idx])
                idx = (idx + 1) % signals
            sock.sendall(b"".join(batch))
            sent += due
        time.sleep(SLICE_S)
    elapsed = time.monotonic() - t0
    sock.close()
    return {"sent": sent, "seconds": round(elapsed, 3), "rate": round(sent / elapsed, 1), "t0": t0}


def sink(port: int, topic_filter: str, seconds: float, tb: bool) -> dict[str, object]:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    readings = 0
    per_s: dict[int, int] = {}
    t0 = time.monotonic()

    def on_publish(topic: bytes, payload: bytes) -> None:
        nonlocal readings
        n = 1
        if tb:
            try:
                doc = json.loads(payload)
                n = sum(len(e.get("values", {})) for entries in doc.values() for e in entries)
            except (ValueError, AttributeError, TypeError):
                n = 0
        readings += n
        sec = int(time.monotonic() - t0)
        per_s[sec] = per_s.get(sec, 0) + n

    sock = connect(port, f"bench-sink-{time.monotonic_ns()}")
    subscribe(sock, topic_filter)
    sock.settimeout(0.2)
    reader = Reader(on_publish)
    print(json.dumps({"subscribed": True}), flush=True)
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            if stop:
                break  # stopped, and nothing more arrived for 0.2 s: what was in flight is counted
            continue
        except OSError:
            break
        if not data:
            break
        reader.feed(data)
    sock.close()
    return {"messages": reader.publishes, "readings": readings, "per_s": per_s,
            "seconds": round(time.monotonic() - t0, 3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mqttload")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--rate", type=float, required=True)
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--signals", type=int, default=500)
    g.add_argument("--topic", default="bench/load/{i}")
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--filter", required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--tb", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "gen":
        if not (0 < a.rate <= 500_000 and 0 < a.seconds <= 900):
            p.error("--rate in (0, 500000], --seconds in (0, 900]")
        print(json.dumps(gen(a.port, a.rate, a.seconds, a.signals, a.topic)), flush=True)
    else:
        if not 0 < a.seconds <= 3600:
            p.error("--seconds in (0, 3600]")
        print(json.dumps(sink(a.port, a.filter, a.seconds, a.tb)), flush=True)


if __name__ == "__main__":
    try:
        main()
    except (TimeoutError, ConnectionError) as exc:
        raise SystemExit(f"bench.mqttload: {exc}") from exc

"""`python -m bench.soak`: a bounded soak run (default 20 minutes) at moderate load.

The gateway, the field simulators and mosquitto run as separate processes on 127.0.0.1 (the
same rig as `python -m bench`). Every window (default 60 s) it offers background telemetry
over MQTT, makes a few alarm trips through Modbus and through MQTT, and records the daemon's
RSS and the trips' alarm-to-relay latency. At the end it reports the drift: memory growth
from the first to the last window (target < 10 %) and the change of the latency p99.
Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gateway_bench import QUICK, Plan, Rig, trips
from bench.procs import Gen, rss_mb


def soak(minutes: float, window_s: float, rate: int, trips_per_window: int, work: Path) -> dict[str, Any]:
    plan = Plan(**{**QUICK.__dict__, "signals": 100, "badges": 20})
    rig = Rig(work, plan)
    windows: list[dict[str, Any]] = []
    try:
        d = rig.start_daemon()
        d.wait_ready(60)
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            t0 = time.monotonic()
            gen = Gen(rig.broker.port, rate, window_s * 0.8, plan.signals)
            m = trips(rig, "modbus", trips_per_window, max_s=window_s * 0.4)
            q = trips(rig, "mqtt", trips_per_window, max_s=window_s * 0.4)
            load = gen.result()
            assert rig.daemon is not None
            windows.append(
                {
                    "at_s": round(t0 - (end - minutes * 60), 1),
                    "rss_mb": round(rss_mb(rig.daemon.proc.pid), 1),
                    "modbus_p99_ms": m.get("relay", {}).get("p99"),
                    "mqtt_p99_ms": q.get("relay", {}).get("p99"),
                    "missed": (m.get("missed") or 0) + (q.get("missed") or 0),
                    "offered_per_s": load.get("rate"),
                }
            )
            print(json.dumps(windows[-1]), file=sys.stderr, flush=True)
            rest = window_s - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(min(rest, max(0.0, end - time.monotonic())))
    finally:
        rig.close()
    first, last = windows[min(1, len(windows) - 1)], windows[-1]  # the first window includes warm-up

    def drift(key: str) -> float | None:
        a, b = first.get(key), last.get(key)
        return None if not a or b is None else round(100.0 * (b - a) / a, 1)

    return {
        "minutes": minutes,
        "windows": len(windows),
        "rate_per_s": rate,
        "rss_mb_first": first["rss_mb"],
        "rss_mb_last": last["rss_mb"],
        "rss_growth_pct": drift("rss_mb"),
        "modbus_p99_drift_pct": drift("modbus_p99_ms"),
        "mqtt_p99_drift_pct": drift("mqtt_p99_ms"),
        "missed_trips": sum(w["missed"] for w in windows),
        "series": windows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--window-s", type=float, default=60.0)
    p.add_argument("--rate", type=int, default=300, help="background readings/s (moderate: well below saturation)")
    p.add_argument("--trips", type=int, default=4, help="alarm trips per path per window")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as work:
        result = soak(args.minutes, args.window_s, args.rate, args.trips, Path(work))
    print(json.dumps({k: v for k, v in result.items() if k != "series"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench`: performance of the gateway on this machine, every part in its own process.

    python -m bench [--quick] [--json] [--out FILE] [--skip SECTION ...] [--work DIR]

Sections: start, latency, throughput, memory, profile, outbox, vibration, peer. Prints a
readable table (targets beside the figures) and, with --json, one JSON object on the last
line. --quick (a smoke run, < 3 minutes) uses fewer trips, shorter load steps and one
simulated minute instead of ten; every figure says how it was taken. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import gateway_bench as gb
from bench.procs import BenchError

SECTIONS = ("start", "latency", "throughput", "memory", "profile", "outbox", "vibration", "peer")

# (field, target text, predicate)
TARGETS: list[tuple[str, str, Any]] = [
    ("alarm_to_relay_mqtt_ms_p99", "<= 10 ms", lambda v, r: v <= 10),
    ("alarm_to_relay_mqtt_loaded_ms_p99", "<= 25 ms", lambda v, r: v <= 25),
    ("alarm_to_relay_modbus_ms_p99", "<= poll + 10 ms", lambda v, r: v <= r.get("modbus_poll_ms", 0) + 10),
    ("alarm_to_mqtt_ms_p99", "-", None),
    ("modbus_poll_ms", "-", None),
    ("pipeline_readings_per_s", ">= 20000 /s", lambda v, r: v >= 20_000),
    ("pipeline_keeps_up_per_s", "-", None),
    ("daemon_cpu_pct", "-", None),
    ("rss_mb", "<= 120 MB", lambda v, r: v <= 120),
    ("outbox_durable_per_s", ">= 2000 /s", lambda v, r: v >= 2000),
    ("outbox_drain_per_s", "-", None),
    ("outbox_lost_after_kill9", "== 0", lambda v, r: v == 0),
    ("start_to_safe_ms", "<= 300 ms", lambda v, r: v <= 300),
    ("start_to_ready_ms", "-", None),
    ("vibration_cpu_pct", "<= 20 %", lambda v, r: v <= 20),
    ("peer_tb_readings_per_s", "-", None),
    ("ratio_vs_tb", ">= 3", lambda v, r: v >= 3),
]


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0.0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": round(mem, 1), "python": platform.python_version(),
            "kernel": platform.release(), "clock": "time.monotonic() (CLOCK_MONOTONIC, system-wide on Linux)"}


def table(r: dict[str, Any]) -> str:
    lines = [f"{'field':<36} {'value':>12}  {'target':<16} verdict", "-" * 76]
    for field, target, ok in TARGETS:
        v = r.get(field)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            shown, verdict = "n/a", "not measured"
        else:
            shown = f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"
            verdict = "" if ok is None else ("met" if ok(v, r) else "NOT MET")
        lines.append(f"{field:<36} {shown:>12}  {target:<16} {verdict}")
    for k in sorted(r):
        if k.endswith("_error"):
            lines.append(f"! {k}: {r[k]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = gb.QUICK if args.quick else gb.FULL
    work = Path(args.work or tempfile.mkdtemp(prefix="edge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in SECTIONS if s not in args.skip]
    r: dict[str, Any] = {"mode": "quick" if args.quick else "full", "machine": machine(), "work_dir": str(work)}
    t_all = time.monotonic()

    def section(name: str, fn: Any) -> None:
        if name not in wanted:
            return
        t0 = time.monotonic()
        print(f"# {name} ...", file=sys.stderr, flush=True)
        try:
            r.update(fn())
        except (BenchError, OSError, ValueError, KeyError, TimeoutError) as exc:
            r[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        r.setdefault("section_s", {})[name] = round(time.monotonic() - t0, 1)

    rig = None
    if any(s in wanted for s in ("start", "latency", "throughput", "memory", "profile", "peer")):
        rig = gb.Rig(work, plan)
    try:
        if rig is not None:
            section("start", lambda: gb.start_section(rig))
            if rig.daemon is None and any(s in wanted for s in ("latency", "throughput")):
                rig.start_daemon().wait_ready(60)
            section("latency", lambda: gb.latency_section(rig))
            section("throughput", lambda: gb.throughput_section(rig))
            section("latency", lambda: gb.loaded_section(rig))
            section("memory", lambda: gb.memory_section(rig))
            rig.stop_daemon()

            def prof() -> dict[str, Any]:
                from bench.profiling import profile_section

                rate = int(r.get("pipeline_offered_per_s") or 1000)
                return profile_section(rig, max(rate, 1000), 4.0 if args.quick else 15.0)

            section("profile", prof)

            def peer() -> dict[str, Any]:
                from bench.peer_tb import peer_section

                ladder = (10_000, 30_000, 50_000) if args.quick else plan.ladder[7:]
                return peer_section(work, rig.broker.port, ladder, plan.step_s, plan.signals)

            section("peer", peer)
    finally:
        if rig is not None:
            rig.close()

    def outbox() -> dict[str, Any]:
        from bench.outbox_bench import outbox_section

        return outbox_section(work, args.quick)

    section("outbox", outbox)

    def vib() -> dict[str, Any]:
        from bench.vibration_bench import run as vrun

        v = vrun(points=20, samples=8192, seconds=3 if args.quick else 10, max_wall=30.0)
        return {"vibration_cpu_pct": v["vibration_cpu_pct"], "vibration": v}

    section("vibration", vib)
    ours, tb = r.get("pipeline_readings_per_s"), r.get("peer_tb_readings_per_s")
    if ours is not None and tb:
        r["ratio_vs_tb"] = round(ours / tb, 2)
        r["ratio_vs_tb_keeps_up"] = round(r.get("pipeline_keeps_up_per_s", 0.0) / tb, 2)
    elif "peer" in wanted and not tb:
        r.setdefault("peer_tb_error", "no thingsboard-gateway figure: ratio not computed")
    r["total_s"] = round(time.monotonic() - t_all, 1)
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run, under 3 minutes")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    p.add_argument("--work", default=None, help="work directory (configs, logs, profile); default: a temp dir")
    args = p.parse_args(argv)
    r = run(args)
    print(table(r))
    if args.out is not None:
        args.out.write_text(json.dumps(r, indent=1))
    if args.json:
        print(json.dumps(r, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

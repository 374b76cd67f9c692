"""Where the daemon spends its time under pipeline load: pyinstrument around the real process.

The daemon runs as `python -m pyinstrument -m gateway.app.cli run --config ... --duration S`
(pinned to core 0 like every other daemon of the bench), fed by the load generator; its
text report lands in the run's work directory and the heaviest frames go into the result.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.gateway_bench import Rig
from bench.procs import Gen


def profile_section(rig: Rig, rate: int, seconds: float) -> dict[str, Any]:
    if importlib.util.find_spec("pyinstrument") is None:
        return {"profile_error": "pyinstrument is not installed (pip install pyinstrument)"}
    report = rig.work / "profile.txt"
    html = rig.work / "profile.html"
    prefix = [sys.executable, "-m", "pyinstrument", "--interval", "0.0005", "-r", "text", "-o", str(report)]
    d = rig.start_daemon(prefix=prefix, duration=seconds + 4)
    d.wait_ready(60)
    gen = Gen(rig.broker.port, rate, seconds, rig.plan.signals)
    gen.result()
    deadline = time.monotonic() + 30
    while d.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    rig.stop_daemon()
    if not report.exists():
        return {"profile_error": f"pyinstrument wrote no report (see {rig.log})"}
    _ = html
    return {"profile_rate": rate, "profile_seconds": seconds, "profile_report": str(report),
            "profile_top": top_frames(report.read_text())}


_LINE = re.compile(r"^[\s│├└─]*(\d+\.\d+)\s+(\S+)\s+(\S+)")


def top_frames(text: str, n: int = 15) -> list[str]:
    """The heaviest frames from our own packages (gateway, drivers, rules), by total time."""
    seen: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        secs, func, where = float(m.group(1)), m.group(2), m.group(3)
        if not any(p in where for p in ("gateway/", "drivers/", "rules/", "aiomqtt", "paho", "structlog", "json")):
            continue
        key = f"{func} {where}"
        seen[key] = max(seen.get(key, 0.0), secs)
    return [f"{s:.3f}s {k}" for k, s in sorted(seen.items(), key=lambda kv: -kv[1])[:n]]


def _main() -> None:
    import tempfile

    from bench.gateway_bench import QUICK

    w = Path(tempfile.mkdtemp(prefix="bench-prof-"))
    rig = Rig(w, QUICK)
    try:
        print(profile_section(rig, int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 8.0))
    finally:
        rig.close()


if __name__ == "__main__":
    _main()

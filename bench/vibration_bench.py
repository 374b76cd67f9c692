"""CPU share of vibration analysis: N points x one waveform per simulated second.

    python -m bench.vibration_bench [--points 20] [--samples 8192] [--seconds 10]

Each simulated second analyzes one fresh waveform per point (a shaft tone, a bearing tone,
noise and a DC offset, sampled at `samples` Hz so one frame is 1 s). Only `analyze` is
timed, with `time.process_time` (CPU of this process, all threads). The share is CPU
seconds spent per simulated second: 100 % would be one core fully busy. The run is bounded
by `--seconds` simulated seconds and by `--max-wall` real seconds, whichever comes first.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from rules.vibration import VibrationResult, analyze


def waveforms(rng: np.random.Generator, points: int, samples: int) -> np.ndarray:
    """One second of acceleration (m/s2) per point, shape (points, samples)."""
    t = np.arange(samples) / samples
    shaft = rng.uniform(20.0, 60.0, (points, 1))
    bearing = rng.uniform(150.0, 900.0, (points, 1))
    x = (
        rng.uniform(1.0, 20.0, (points, 1)) * np.sin(2 * np.pi * shaft * t)
        + rng.uniform(0.5, 5.0, (points, 1)) * np.sin(2 * np.pi * bearing * t + 0.3)
        + rng.normal(0.0, 0.5, (points, samples))
        + 2.0
    )
    return x


def run(points: int, samples: int, seconds: int, max_wall: float, seed: int = 1) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    fs = float(samples)
    cpu = 0.0
    done = 0
    wall0 = time.monotonic()
    for _ in range(seconds):
        frames = waveforms(rng, points, samples)  # generation is not timed
        c0 = time.process_time()
        for row in frames:
            r = analyze(row, fs, "m/s2")
            if not isinstance(r, VibrationResult):
                raise SystemExit(f"vibration_bench: frame rejected: {r}")
        cpu += time.process_time() - c0
        done += 1
        if time.monotonic() - wall0 > max_wall:
            break
    per_frame_ms = cpu / (done * points) * 1000.0
    return {
        "bench": "vibration",
        "points": points,
        "samples": samples,
        "sample_rate_hz": fs,
        "simulated_s": done,
        "cpu_s": round(cpu, 4),
        "per_frame_ms": round(per_frame_ms, 4),
        "vibration_cpu_pct": round(cpu / done * 100.0, 3),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.vibration_bench", description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--samples", type=int, default=8192, help="samples per 1 s frame (= sample rate)")
    p.add_argument("--seconds", type=int, default=10, help="simulated seconds")
    p.add_argument("--max-wall", type=float, default=30.0, help="stop after this many real seconds")
    a = p.parse_args(argv)
    if a.points < 1 or a.seconds < 1:
        p.error("--points and --seconds must be >= 1")
    print(json.dumps(run(a.points, a.samples, a.seconds, a.max_wall)))


if __name__ == "__main__":
    main()

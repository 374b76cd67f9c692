"""The counters and latency histograms the gateway keeps for /metrics (rendered by gateway.app.metrics)."""

from __future__ import annotations

import bisect
from collections import Counter

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, v)] += 1
        self.sum += v
        self.n += 1

    def lines(self, name: str, help_: str) -> list[str]:
        out = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        acc = 0
        for b, c in zip(BUCKETS_S, self.counts, strict=False):
            acc += c
            out.append(f'{name}_bucket{{le="{b}"}} {acc}')
        out += [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.sum:.6f}", f"{name}_count {self.n}"]
        return out


class Metrics:
    def __init__(self) -> None:
        self.readings: Counter[tuple[str, str]] = Counter()
        """(signal, quality) -> readings seen by the engine."""
        self.engine_step = Histogram()
        self.output_write = Histogram()

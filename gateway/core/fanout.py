"""Sinks and the one ordered fan-out that feeds them.

The engine decides; what it decided goes out through sinks, in a fixed order: the output
bank first (coil commands must never wait behind anything slow), then the log, MQTT,
Sparkplug, the records (ledger outbox and audit chain), local state, the status page. Each
reading goes to the sinks that take readings (metrics, trends, MQTT telemetry, TSDB,
Sparkplug).

A sink is anything with a `name` and `on_step` and/or `on_reading`. Its calls are
synchronous and must not block: sinks queue, and their own tasks do the I/O. An exception
in a sink is that sink's fault: logged once per kind of error with its traceback, counted
(`faults`, shown in /metrics and /api/state), and the fan-out goes on to the next sink. Only
the output sink is not guarded: if commanding a coil fails, the engine loop fails and the
daemon ends with every output safe.

Adding a northbound sink: write a class with `name` and `on_step`/`on_reading`, and add one
line where the daemon builds the fan-out (`Daemon._sinks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from rules.actions import Action
from rules.config import EngineCfg, SignalCfg
from rules.engine import EngineState
from rules.events import Reading

log = structlog.get_logger("fanout")


@dataclass(frozen=True, slots=True)
class Step:
    """One engine step as the sinks see it."""

    actions: tuple[Action, ...]
    prev: EngineState
    """The state before the step (decision records compare the two)."""
    state: EngineState
    cfg: EngineCfg
    now: float
    """Monotonic seconds of the step."""
    utc: str
    """ISO 8601 UTC of the step: one time for every body the step produces (MQTT and ledger agree)."""


@runtime_checkable
class StepSink(Protocol):
    name: str

    def on_step(self, step: Step) -> None: ...


@runtime_checkable
class ReadingSink(Protocol):
    name: str

    def on_reading(self, ev: Reading, sig: SignalCfg) -> None: ...


class FanOut:
    """Readings and steps to every sink, in order; one sink's exception stays that sink's."""

    def __init__(self, first: StepSink, sinks: Sequence[object]) -> None:
        """`first` (the output bank's sink) runs unguarded before the others; `sinks` in order."""
        self.first = first
        self.step_sinks: tuple[StepSink, ...] = tuple(s for s in sinks if isinstance(s, StepSink))
        self.reading_sinks: tuple[ReadingSink, ...] = tuple(s for s in sinks if isinstance(s, ReadingSink))
        self.faults: Counter[str] = Counter()
        """Exceptions per sink name."""
        self.last_error: dict[str, str] = {}
        self._logged: set[tuple[str, str]] = set()

    @property
    def names(self) -> list[str]:
        seen = [self.first.name, *(s.name for s in self.step_sinks), *(s.name for s in self.reading_sinks)]
        return list(dict.fromkeys(seen))

    def step(self, step: Step) -> None:
        self.first.on_step(step)
        for s in self.step_sinks:
            try:
                s.on_step(step)
            except Exception as exc:
                self._fault(s.name, exc)

    def reading(self, ev: Reading, sig: SignalCfg) -> None:
        for s in self.reading_sinks:
            try:
                s.on_reading(ev, sig)
            except Exception as exc:
                self._fault(s.name, exc)

    def _fault(self, name: str, exc: Exception) -> None:
        self.faults[name] += 1
        self.last_error[name] = f"{type(exc).__name__}: {exc}"
        key = (name, type(exc).__name__)
        if key not in self._logged:  # once per kind of error, not once per reading
            self._logged.add(key)
            log.error("sink_failed", sink=name, error=repr(exc), count=self.faults[name], exc_info=exc)


__all__ = ["FanOut", "ReadingSink", "Step", "StepSink"]

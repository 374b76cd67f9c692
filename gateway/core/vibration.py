"""Vibration waveforms -> ISO 10816-3 velocity RMS readings, off the event loop; persisted baselines.

`VibrationPipeline.on_waveform(frame)` is the MQTT input's `on_waveform` callback (it runs
in the event loop). The analysis (`rules.vibration.analyze`: one FFT of 8192+ samples,
a few ms) runs in a worker thread through `asyncio.to_thread`, bounded per point:

* at most one analysis in flight per point;
* a frame arriving meanwhile waits as the point's *one* queued frame; a newer frame
  replaces an older queued one (counted in `replaced`): the engine wants the latest
  state of the machine, and a backlog of old frames would only delay it.

Each analysed frame becomes `Reading(signal, velocity_rms_mm_s, frame.at)`. A frame the
analysis refuses (too short for 1 s, sample rate below 2.56 x the band top, wrong unit)
becomes `Reading(signal, NaN, frame.at, BAD, "bad_payload:<reason>")`. Unlike a corrupt
MQTT payload (which the driver drops: one flipped byte must not stop a shift), these
refusals come from a decoded, well-formed frame and repeat with every frame of that
sensor: a misconfigured sensor, which must show as a sensor fault, not as silence.

The last result per point (peaks, crest factor, acceleration RMS) is kept for the status
page (`status`), and `on_result` lets the daemon send those extras to the TSDB
(`analysis_point`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from drivers.mqtt_in import WaveformFrame
from gateway.northbound.tsdb import TsPoint
from rules.condition import MachineCfg
from rules.config import EngineCfg
from rules.events import Event, Quality, Reading
from rules.vibration import (
    BandError,
    Baseline,
    IsoCfg,
    VibrationRejection,
    VibrationResult,
    analyze,
    iso_zone,
)

log = structlog.get_logger("vibration")

ISO_BAND: tuple[float, float] = (10.0, 1000.0)
"""ISO 10816-3 / 20816-3 velocity band in Hz."""


@dataclass(frozen=True, slots=True)
class VibrationPoint:
    """How one vibration signal's waveforms are analysed."""

    band: tuple[float, float] = ISO_BAND
    """Band-pass in Hz; ISO 10816-3 is 10-1000 Hz."""
    iso: IsoCfg | None = None
    """Zone boundaries of the machine it belongs to (status page only; the rules decide)."""
    zone: str = ""
    """Plant zone of the signal (TSDB tag)."""

    def __post_init__(self) -> None:
        lo, hi = self.band
        if not (0.0 < lo < hi and math.isfinite(hi)):
            raise BandError(self.band)


@dataclass(frozen=True, slots=True)
class _Failure:
    """The analysis raised: a bug, reported as a BAD reading rather than crashing the daemon."""

    detail: str


@dataclass(slots=True)
class PointStatus:
    """What the pipeline knows of one point (mutable: the shell's own bookkeeping)."""

    received: int = 0
    """Frames handed in by the MQTT input."""
    analyzed: int = 0
    """Frames analysed into a GOOD reading."""
    rejected: int = 0
    """Frames refused by the analysis (each one a BAD reading)."""
    replaced: int = 0
    """Queued frames dropped unanalysed because a newer one arrived first."""
    result: VibrationResult | None = None
    result_at: float | None = None
    """Monotonic arrival time of the frame behind `result`."""
    analysis_ms: float | None = None
    """Wall time the last analysis took in its thread."""
    rejection: str = ""
    """The last refusal (reason: detail); cleared by the next good frame."""
    rejection_at: float | None = None


Outcome = VibrationResult | VibrationRejection | _Failure

OnResult = Callable[[str, VibrationResult, float], None]
"""on_result(signal, result, frame.at): called in the event loop after each GOOD reading."""


class VibrationPipeline:
    """Waveform frames in, one `Reading` per analysed frame out (see the module docstring)."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        points: Mapping[str, VibrationPoint],
        *,
        on_result: OnResult | None = None,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self.points: Mapping[str, VibrationPoint] = dict(points)
        self._on_result = on_result
        self.stats: dict[str, PointStatus] = {sig: PointStatus() for sig in self.points}
        self.unknown = 0
        """Frames of a signal that is not a configured vibration point (dropped)."""
        self._pending: dict[str, WaveformFrame] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # -- input (event loop) --------------------------------------------------------------

    def on_waveform(self, frame: WaveformFrame) -> None:
        """Take one decoded frame; never blocks, never raises."""
        st = self.stats.get(frame.signal)
        if st is None:
            if self.unknown == 0:
                log.warning("waveform_unknown_signal", signal=frame.signal)
            self.unknown += 1
            return
        st.received += 1
        if frame.signal in self._workers:
            if frame.signal in self._pending:
                st.replaced += 1
            self._pending[frame.signal] = frame
            return
        task = asyncio.get_running_loop().create_task(self._work(frame), name=f"vibration[{frame.signal}]")
        self._workers[frame.signal] = task

    @property
    def busy(self) -> int:
        """Points with an analysis in flight."""
        return len(self._workers)

    async def idle(self, timeout_s: float = 5.0) -> None:
        """Wait until no analysis is in flight or queued (tests, orderly shutdown)."""
        async with asyncio.timeout(timeout_s):
            while self._workers:
                await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the workers (a thread already running finishes on its own, its result unused)."""
        self._pending.clear()
        tasks = list(self._workers.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # -- worker ----------------------------------------------------------------------------

    async def _work(self, frame: WaveformFrame) -> None:
        sig = frame.signal
        point = self.points[sig]
        try:
            nxt: WaveformFrame | None = frame
            while nxt is not None:
                outcome, ms = await asyncio.to_thread(_analyze, nxt, point.band)
                self._deliver(nxt, outcome, ms)
                nxt = self._pending.pop(sig, None)
        finally:
            self._workers.pop(sig, None)

    def _deliver(self, frame: WaveformFrame, outcome: Outcome, ms: float) -> None:
        sig = frame.signal
        st = self.stats[sig]
        st.analysis_ms = ms
        if isinstance(outcome, VibrationResult):
            st.analyzed += 1
            st.result, st.result_at = outcome, frame.at
            if st.rejection:
                log.info("waveform_recovered", signal=sig)
                st.rejection = ""
            self._emit(Reading(sig, outcome.velocity_rms_mm_s, frame.at))
            if self._on_result is not None:
                self._on_result(sig, outcome, frame.at)
            return
        if isinstance(outcome, VibrationRejection):
            reason, text = outcome.bad_reason, f"{outcome.reason.value}: {outcome.detail}"
        else:
            reason, text = "bad_payload:analysis_error", f"analysis_error: {outcome.detail}"
        st.rejected += 1
        if text != st.rejection:  # log on change, not per frame
            log.warning("waveform_rejected", signal=sig, detail=text)
        st.rejection, st.rejection_at = text, frame.at
        self._emit(Reading(sig, math.nan, frame.at, Quality.BAD, reason))

    # -- status page -------------------------------------------------------------------------

    def status(self, now: float) -> dict[str, dict[str, Any]]:
        """JSON-ready view per point: last analysis (peaks, crest factor, acceleration RMS) and counters."""
        out: dict[str, dict[str, Any]] = {}
        for sig, st in self.stats.items():
            p = self.points[sig]
            r = st.result
            body: dict[str, Any] = {
                "received": st.received,
                "analyzed": st.analyzed,
                "rejected": st.rejected,
                "replaced": st.replaced,
                "busy": sig in self._workers,
                "analysis_ms": None if st.analysis_ms is None else round(st.analysis_ms, 2),
                "rejection": st.rejection or None,
                "band_hz": list(p.band),
                "iso": iso_json(p.iso),
            }
            if r is not None and st.result_at is not None:
                body.update(
                    age_s=round(now - st.result_at, 2),
                    velocity_rms_mm_s=round(r.velocity_rms_mm_s, 4),
                    acceleration_rms_m_s2=round(r.acceleration_rms_m_s2, 4),
                    crest_factor=round(r.crest_factor, 3),
                    peaks=[
                        {"frequency_hz": round(pk.frequency_hz, 2), "velocity_rms_mm_s": round(pk.velocity_rms_mm_s, 4)}
                        for pk in r.peaks
                    ],
                    sample_rate_hz=r.sample_rate_hz,
                    samples=r.samples,
                    iso_zone=iso_zone(r.velocity_rms_mm_s, p.iso) if p.iso is not None else None,
                )
            out[sig] = body
        return out


def _analyze(frame: WaveformFrame, band: tuple[float, float]) -> tuple[Outcome, float]:
    """Runs in a worker thread: numpy releases the GIL in the FFT."""
    t0 = time.perf_counter()
    try:
        out: Outcome = analyze(frame.samples, frame.sample_rate_hz, frame.unit.value, band)
    except (ValueError, ArithmeticError, MemoryError) as exc:
        # analyze() returns rejections for bad frames; reaching here is a bug. One frame
        # must not take the gateway down: it becomes a BAD reading and a logged traceback.
        log.exception("waveform_analysis_failed", signal=frame.signal)
        out = _Failure(f"{type(exc).__name__}: {exc}")
    return out, (time.perf_counter() - t0) * 1000.0


def iso_json(iso: IsoCfg | None) -> dict[str, Any] | None:
    """ISO zone boundaries in mm/s for charts: {"ab", "bc", "cd", "group", "foundation"}."""
    if iso is None:
        return None
    ab, bc, cd = iso.boundaries
    return {"ab": ab, "bc": bc, "cd": cd, "group": iso.group, "foundation": iso.foundation}


def analysis_point(signal: str, zone: str, result: VibrationResult, ts_ns: int) -> TsPoint:
    """The analysis extras of one frame as a TSDB point (the RMS itself goes as the signal's reading).

    Measurement ``vibration``; fields ``acceleration_rms_m_s2``, ``crest_factor`` and, per
    peak n = 1..3, ``peak{n}_hz`` and ``peak{n}_mm_s``; tags ``signal`` and ``zone``.
    """
    fields: dict[str, float] = {
        "velocity_rms_mm_s": result.velocity_rms_mm_s,
        "acceleration_rms_m_s2": result.acceleration_rms_m_s2,
        "crest_factor": result.crest_factor,
    }
    for n, pk in enumerate(result.peaks, start=1):
        fields[f"peak{n}_hz"] = pk.frequency_hz
        fields[f"peak{n}_mm_s"] = pk.velocity_rms_mm_s
    return TsPoint("vibration", {"signal": signal, "zone": zone}, fields, ts_ns)


# --- learned baselines ------------------------------------------------------------------


class BaselineStore:
    """Learned vibration baselines per machine, in one small JSON file under the state dir.

    Written on `Note("baseline_learned")` (rare: once per machine), read once at start and
    handed to `rules.machines.initial`. A damaged entry is skipped with a warning: the
    machine simply learns again, which is safe (learning never alerts).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Baseline]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("baselines_unreadable", path=str(self.path), error=str(exc))
            return {}
        if not isinstance(raw, dict):
            log.warning("baselines_unreadable", path=str(self.path), error="not a JSON object")
            return {}
        out: dict[str, Baseline] = {}
        for mid, d in raw.items():
            try:
                if not isinstance(d, dict):
                    raise ValueError("expected an object")
                out[str(mid)] = Baseline.from_dict(d)
            except ValueError as exc:
                log.warning("baseline_skipped", machine=mid, error=str(exc))
        return out

    def save(self, machine: str, baseline: Mapping[str, object]) -> bool:
        """Store one machine's `Baseline.to_dict()` atomically (temp file, fsync, rename).

        Never raises on a disk problem (it runs in the engine loop's executor): it logs and
        returns False; the baseline is then learned again after the next start.
        """
        current: dict[str, object] = {m: b.to_dict() for m, b in self.load().items()}
        current[machine] = dict(baseline)
        tmp = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".baselines-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(current, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("baseline_save_failed", machine=machine, path=str(self.path), error=str(exc))
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return False
        log.info("baseline_saved", machine=machine, value=current[machine])
        return True


def vibration_points(
    signals: Iterable[str], ecfg: EngineCfg, machines: Mapping[str, MachineCfg]
) -> dict[str, VibrationPoint]:
    """Pipeline points for the waveform signals: zone from the signal, ISO class from its machine."""
    iso = {m.vibration_signal: m.iso for m in machines.values()}
    return {sig: VibrationPoint(iso=iso.get(sig), zone=ecfg.signals[sig].zone) for sig in signals}

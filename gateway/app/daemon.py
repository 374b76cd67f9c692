"""The supervisor: one asyncio.TaskGroup, the engine loop, and the way out (always safe).

Order at start: outputs written safe (and read back) before any other task starts.
Order at stop (SIGTERM/SIGINT, --duration, or a crash): tasks cancelled, outputs safe,
STOPPING=1, safety messages flushed, offline status published.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from drivers.modbus import BusRegistry, ModbusSource
from gateway import __version__
from gateway.app import sinks as sinks_
from gateway.app import startup, wiring
from gateway.app.sdnotify import Notifier, watchdog_interval_s
from gateway.app.startup import StartFailure
from gateway.app.view import DaemonView
from gateway.config import ConfigError, GatewayConfig, Reload, plausibility
from gateway.config.loader import engine_cfg, read_secret, resolve_path
from gateway.config.reload import changes as reload_changes
from gateway.config.specs import modbus_specs, waveform_mappings
from gateway.core import statefile
from gateway.core.clock import Clock, SystemClock, iso
from gateway.core.fanout import FanOut, Step
from gateway.core.inbox import Inbox
from gateway.core.inputs import PermitLoader, ble_sources, face_gate, face_mqtt
from gateway.core.metrics import Metrics
from gateway.core.outputs import OutputBank
from gateway.core.source import Supervised
from gateway.core.trends import TrendStore, trend_points
from gateway.core.vibration import BaselineStore, VibrationPipeline, analysis_point, vibration_points
from gateway.ledger.anchors import AnchorPublisher
from gateway.ledger.client import LedgerClient
from gateway.ledger.permit_sync import PermitSync
from gateway.ledger.records import Records
from gateway.northbound.mqtt_out import MqttOut
from gateway.status.view import StatusHub
from gateway.status.web import StatusServer
from rules import engine, gas, persist
from rules.actions import Action
from rules.events import Event, Reading, SensorDates, Tick

if TYPE_CHECKING:
    from rules.vibration import VibrationResult

log = structlog.get_logger("daemon")

STOP_GRACE_S = 5.0
"""How long tasks get to finish after a stop before the outputs are made safe regardless."""

TASK_BACKOFF_BASE_S, TASK_BACKOFF_CAP_S = 0.5, 30.0
"""Restart delay of a failed source or sink: base * 2^(n-1), capped, jittered to [d/2, d]."""


def task_backoff_s(failures: int, jitter: float) -> float:
    """The shared restart backoff: `jitter` in [0, 1) spreads restarts of tasks that failed together."""
    d = min(TASK_BACKOFF_CAP_S, TASK_BACKOFF_BASE_S * 2.0 ** min(max(failures, 1) - 1, 30))
    return d * (0.5 + jitter / 2)


class Daemon:
    def __init__(
        self,
        cfg: GatewayConfig,
        base: Path = Path("."),
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        config_hash: str = "",
        config_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.base = base
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self.config_hash = config_hash
        self.config_path = config_path
        self.ecfg = engine_cfg(cfg)
        for w in plausibility.warnings(cfg, self.ecfg):  # valid but probably wrong: said at every start
            log.warning("config_warning", setting=w.path, warning=w.message)
        self.state_dir = resolve_path(base, cfg.state.dir)
        self.baselines = BaselineStore(self.state_dir / "baselines.json")
        self.state = engine.initial(self.ecfg, self.baselines.load())
        # Gases and machine inputs take the safety lane: they drop permissives and stop machines
        # (machine inputs are few, ~1 Hz each). The same set takes full engine steps in a batch.
        self.inbox = Inbox(cfg.engine.telemetry_queue, safety_signals=self.ecfg.eager)
        self.readings_applied = 0
        """Readings through the engine (a batch of telemetry is one step but many readings)."""
        self.buses = BusRegistry()
        specs = modbus_specs(cfg)
        mono = self.clock.monotonic
        self.sources = [ModbusSource(spec, self.inbox.put, mono, self.buses) for spec in specs.values() if spec.points]
        self.outputs = OutputBank(cfg, specs, self.buses, self.inbox.put, mono, on_alert=self.output_alert)
        self.waveforms = waveform_mappings(cfg)
        self.vibration = VibrationPipeline(
            self.inbox.put,
            mono,
            vibration_points((w.signal for w in self.waveforms), self.ecfg, self.ecfg.machines),
            on_result=self._vibration_result,
        )
        self.trends = TrendStore(trend_points(self.ecfg.machines, {s.id: s.unit for s in cfg.signals}), self.clock)
        self.mqtt_inputs = wiring.mqtt_inputs(self)
        self.mqtt = MqttOut(
            cfg.mqtt,
            cfg.site.id,
            cfg.site.gateway_id,
            self.clock,
            base,
            __version__,
            self.state_dir / "mqtt-spill.jsonl",
        )
        self.records = Records(cfg, self.state_dir, base, self.clock)
        self.anchors = AnchorPublisher(
            lambda: self.records.audit.head if self.records.audit is not None else None,
            lambda body: self.mqtt.state("audit", ("head",), body, self.clock.monotonic()),
            lambda: iso(self.clock.utc()),
            cfg.audit.anchor_interval_s,
        )
        self.people = {p.id: p.name for p in cfg.people}
        self.ble = ble_sources(cfg, self.inbox.put, self.clock)
        self.face = face_gate(cfg, base, self.state_dir, self.inbox.put, self.clock)
        self.face_mqtt = face_mqtt(cfg, self.face, base)
        self.permits = PermitLoader(cfg, self.ecfg, base, self.inbox.put, self.clock)
        self.ledger_client: LedgerClient | None = None
        self.permit_sync: PermitSync | None = None
        if cfg.ledger.url and cfg.ledger.public_key_file:
            self.ledger_client = LedgerClient(cfg.ledger.url, token=read_secret(base, cfg.ledger.token_file))
            self.permit_sync = PermitSync(
                self.ledger_client,
                self.permits,
                cfg.site.id,
                [z.id for z in cfg.zones],
                self.state_dir / "permits.db",
                poll_s=cfg.ledger.permit_poll_s,
                clock=self.clock,
            )
        self.sparkplug = wiring.sparkplug_node(self) if cfg.sparkplug.enabled else None
        self.tsdb = wiring.tsdb_writer(self)
        self.metrics = Metrics()
        self.outputs.on_write = self.metrics.output_write.observe
        self.hub = StatusHub()
        self._save_wake = asyncio.Event()
        self.last_good = sinks_.LastGoodSink()
        self.fanout = self._sinks()
        self.web = StatusServer(DaemonView(self), cfg.status.bind, cfg.status.port)
        self.ready = False
        self.started_mono = mono()
        self.rejected_events = 0
        self.task_restarts: Counter[str] = Counter()
        """Restarts of each supervised task after a failure (/metrics, status page)."""
        self.last_reload: dict[str, object] | None = None
        """The outcome of the last SIGHUP (for /api/state)."""
        self.last_tick: float | None = None
        """Monotonic time of the engine loop's last tick (liveness for /healthz)."""
        self.fatal: str | None = None
        """Set when the engine loop or the output bank failed (the run then exits 1)."""
        self.task_faults: dict[str, str] = {}
        """The last failure of each supervised task that has failed."""
        self.extra_tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        """(name, coroutine factory) run under the same TaskGroup (demo scenario, sims)."""
        self._stop: asyncio.Event | None = None
        self._wd_every = watchdog_interval_s()
        self._dates: dict[str, tuple[int | None, int | None]] = {}
        self._saved_latches: dict[str, object] | None = None
        self._last_wd = -1e9

    def _vibration_result(self, signal: str, result: VibrationResult, at: float) -> None:
        """Analysis extras (acceleration RMS, crest factor, peaks) to the TSDB; the RMS goes as the reading."""
        if self.tsdb is not None:
            self.tsdb.add_point(analysis_point(signal, self.ecfg.signals[signal].zone, result, self.tsdb.stamp(at)))

    def _sinks(self) -> FanOut:
        """The ordered fan-out of decisions and readings: coils first, then everything northbound.
        A new northbound sink is one more line here."""
        sinks: list[object] = [
            sinks_.LogSink(),
            self.last_good,
            sinks_.MetricsSink(self.metrics),
            sinks_.TrendsSink(self.trends),
            sinks_.MqttSink(self.mqtt, lambda: self.people, lambda: self.state, lambda: self.ecfg.signals),
        ]
        if self.sparkplug is not None:
            sinks.append(sinks_.SparkplugSink(self.sparkplug, self.clock))
        if self.tsdb is not None:
            sinks.append(sinks_.TsdbSink(self.tsdb))
        sinks += [
            sinks_.RecordsSink(self.records, self.cfg.site.id),
            sinks_.LocalStateSink(self.baselines, self._save_wake),
            sinks_.StatusSink(self.hub),
        ]
        return FanOut(sinks_.OutputSink(self.outputs), sinks)

    def output_alert(self, kind: str, fields: dict[str, object]) -> None:
        """An output-bank alert (a safe value re-written, a module starved) on every channel: the
        bank has logged it; here the audit chain, MQTT and the page."""
        body = {"event": kind, "utc": iso(self.clock.utc()), **fields}
        self.records.audit_line(kind, body)
        self.mqtt.event("output_fault", body, self.clock.monotonic())
        self.hub.changed()

    # ---- life cycle -------------------------------------------------------------------
    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self, duration: float | None = None, outputs_within_s: float = startup.START_OUTPUTS_S) -> int:
        """Run until stopped; 0 on a clean stop, 1 on a runtime failure (outputs safe either way).
        `outputs_within_s`: how long the outputs may take to confirm safe (less when the CLI's first
        safe write already spent part of START_OUTPUTS_S without a confirmation)."""
        self._outputs_within_s = outputs_within_s
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info(
            "gateway_starting",
            version=__version__,
            config_hash=self.config_hash,
            config=str(self.config_path) if self.config_path else None,
            site=self.cfg.site.id,
            gateway=self.cfg.site.gateway_id,
        )
        code = 0
        try:
            failure = await self._start()
            if failure is not None:
                log.critical("gateway_start_failed", cause=failure.cause, fix=failure.fix)
                print(failure.line(), file=sys.stderr, flush=True)
                code = 1
                return code
            tasks = asyncio.create_task(self._supervisor(), name="supervisor[main]")
            stopper = asyncio.create_task(self._stopper(self._stop, duration), name="stopper[main]")
            await asyncio.wait({tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if tasks.done():
                stopper.cancel()
                code = self._failed(tasks)
            else:
                tasks.cancel()
                _, pending = await asyncio.wait({tasks}, timeout=STOP_GRACE_S)
                if pending:
                    self._log_stuck()
            if self.fatal is not None:
                code = 1  # the engine or the output bank failed: never exit 0 after that
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self._save_latches()
            self.notifier.stopping()
            await self.outputs.shutdown()  # first, and on its own: nothing below may delay or skip it
            await self._close_northbound(code)
            self.notifier.close()
            log.info("gateway_stopped", code=code)
        return code

    async def _close_northbound(self, code: int) -> None:
        """Everything after the outputs, each step on its own: one failing never skips the rest."""
        steps: list[tuple[str, Callable[[], Awaitable[object] | object]]] = [
            ("vibration", self.vibration.close),
            ("status", self.web.close),
            ("audit_stop", lambda: self.records.audit_line("gateway_stopped", {"utc": iso(self.clock.utc()),
                                                                              "code": code})
             if self.records.audit is not None else None),
            ("records", self.records.close),
            ("audit_anchor", lambda: self.anchors.publish("stop")),  # the head with the stop record
            ("mqtt", self.mqtt.goodbye),
        ]  # fmt: skip
        if self.sparkplug is not None:
            steps.append(("sparkplug", self.sparkplug.goodbye))
        if self.tsdb is not None:
            steps.append(("tsdb", lambda: self.tsdb.close(timeout_s=3) if self.tsdb is not None else None))
        if self.permit_sync is not None:
            steps.append(("permit_sync", self.permit_sync.close))
        if self.ledger_client is not None:
            steps.append(("ledger", self.ledger_client.close))
        steps.append(("buses", self.buses.close))
        for name, step in steps:
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                log.error("stop_step_failed", step=name, error=repr(exc), exc_info=exc)

    async def _start(self) -> StartFailure | None:
        """Outputs safe first, then everything "ready" depends on (gateway/app/startup.py)."""
        failure = await startup.confirm_outputs(self.outputs, self.cfg, self._outputs_within_s)
        self.safe_at = self.clock.monotonic()
        failure = failure or startup.check_state_dir(self.state_dir) or startup.check_broker_tls(self.cfg, self.base)
        if failure is not None:
            return failure
        await self.records.open()  # after the outputs are safe: a bad disk must not delay that
        prev = self.records.audit.head if self.records.audit is not None else None
        self.records.audit_line("gateway_started", {
            "utc": iso(self.clock.utc()), "version": __version__, "config_hash": self.config_hash,
            "previous_head": None if prev is None else {"seq": prev.seq, "hash": prev.hash},
            "previous_stop": previous_stop(self.records.audit.last_kind if self.records.audit else None),
        })  # fmt: skip
        self.anchors.publish("start")  # the previous run's last record, before this run appends
        self._restore()
        self.permits.load_dir()
        if self.permit_sync is not None and self.ledger_client is not None:
            await self.ledger_client.start()
            await self.permit_sync.load_cache()  # offline: permits keep working until they expire
        return await startup.bind_status(self.web, self.cfg.status.bind, self.cfg.status.port)

    async def _critical(self, coro: Awaitable[None], name: str) -> None:
        """The engine loop and the output bank: a failure ends the daemon (outputs safe, exit 1)
        even if some other task then ignores its cancellation."""
        try:
            await coro
        except Exception as exc:
            self.fatal = f"{name}: {exc!r}"
            log.critical("critical_task_failed", task=name, error=repr(exc), exc_info=exc)
            self.request_stop()
            raise

    def _sources(self) -> list[Supervised]:
        """Everything that brings events in, each with what goes down while it restarts."""
        out = [Supervised(f"modbus[{s.spec.id}]", s.run, s.mark_down) for s in self.sources]
        out += [Supervised(f"mqtt_in[{mi.name}]", mi.run) for mi in self.mqtt_inputs]
        out += [Supervised(f"ble[{b.receiver}]", b.run, b.mark_down) for b in self.ble]
        if self.face_mqtt is not None:
            out.append(Supervised("face_mqtt[main]", self.face_mqtt.run))
        if self.permit_sync is not None:
            out.append(Supervised("permit_sync[ledger]", self.permit_sync.run))
        return out

    def _sink_tasks(self) -> list[Supervised]:
        """The sinks' own I/O tasks (their engine-step side is the fan-out, app/sinks.py)."""
        out = [
            Supervised("mqtt_out[main]", self.mqtt.run),
            Supervised("records[main]", self.records.run),
            Supervised("audit_anchor[main]", self.anchors.run),
            Supervised("statefile[main]", self._saver),
        ]
        if self.sparkplug is not None:
            out.append(Supervised("sparkplug[main]", self.sparkplug.run))
        if self.tsdb is not None:
            out.append(Supervised("tsdb[main]", self.tsdb.run))
        return out

    async def _supervisor(self) -> None:
        """Every long-running task under one TaskGroup. The engine loop and the output bank end the
        daemon when they fail; every source and every other sink runs under `_supervise`."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._critical(self._engine(), "engine[main]"), name="engine[main]")
            tg.create_task(self._critical(self.outputs.run(), "outputs[bank]"), name="outputs[bank]")
            tg.create_task(self.web.run(), name="status[http]")  # bound at start; aiohttp serves from it
            for t in (*self._sources(), *self._sink_tasks()):
                tg.create_task(self._supervise(t.run, t.name, t.on_down), name=t.name)
            for name, factory in self.extra_tasks:
                tg.create_task(factory(), name=name)

    @staticmethod
    def _failed(tasks: asyncio.Task[None]) -> int:
        exc = tasks.exception()
        errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        for e in errors:
            log.critical("gateway_failed", error=repr(e), exc_info=e)
        return 1

    @staticmethod
    def _log_stuck() -> None:
        """A task that ignores cancellation must not keep the outputs from going safe: name it and go on."""
        me = asyncio.current_task()
        for t in asyncio.all_tasks():
            if t is not me and not t.done():
                frames = [f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in t.get_stack(limit=8)]
                log.error("task_stuck_on_stop", task=t.get_name(), frames=frames)

    async def _stopper(self, stop: asyncio.Event, duration: float | None) -> None:
        try:
            async with asyncio.timeout(duration):
                await stop.wait()
        except TimeoutError:
            log.info("duration_elapsed", seconds=duration)

    async def _supervise(
        self, factory: Callable[[], Awaitable[object]], name: str, on_down: Callable[[str], None] | None = None
    ) -> None:
        """Run a source or non-output sink; *any* exception in it is logged once with its traceback,
        counted, and restarts this task alone after a jittered exponential backoff. `on_down(reason)`
        tells the engine what depended on it (a Modbus source: its device is down). Cancellation
        passes through: only the engine loop and the output bank may end the daemon."""
        failures = 0
        while True:
            started = self.clock.monotonic()
            try:
                await factory()
                return
            except Exception as exc:
                self.task_restarts[name] += 1
                self.task_faults[name] = f"{type(exc).__name__}: {exc}"
                log.error("task_failed", task=name, error=repr(exc), restarts=self.task_restarts[name], exc_info=exc)
                if on_down is not None:
                    on_down(f"task_failed: {type(exc).__name__}")
            # A task that ran a while before failing starts its backoff afresh.
            failures = 1 if self.clock.monotonic() - started > 60.0 else failures + 1
            await asyncio.sleep(task_backoff_s(failures, random.random()))

    # ---- the engine loop ----------------------------------------------------------------
    async def _engine(self) -> None:
        next_tick = self.clock.monotonic()
        while True:
            tick_s, batch_max = self.cfg.engine.tick_s, self.cfg.engine.batch_max  # live on reload
            ev = await self.inbox.get(max(0.0, next_tick - self.clock.monotonic()))
            if isinstance(ev, Reading) and batch_max > 1 and not self.inbox.is_safety(ev):
                self.apply_readings(self.inbox.take_readings(ev, batch_max))
                # Let the drivers run between batches: a safety event waits for one batch at most.
                await asyncio.sleep(0)
            elif ev is not None:
                self.apply(ev)
            now = self.clock.monotonic()
            if now >= next_tick:
                self._sensor_dates()
                self.apply(Tick())
                next_tick = now + tick_s
                self.outputs.kick()
                self._liveness(now)
                # Let the other tasks (drivers, outputs) run even under a flood of events.
                await asyncio.sleep(0)

    def _sensor_dates(self) -> None:
        """Detectors' bump/calibration dates (read by the Modbus sources) to the engine, on change."""
        for src in self.sources:
            h = src.health
            if h is None or src.spec.id not in self.ecfg.sensor_intervals:
                continue
            dates = (h.bump_utc_s, h.calibration_utc_s)
            if self._dates.get(src.spec.id) != dates:
                self._dates[src.spec.id] = dates
                offset = self.clock.utc().timestamp() - self.clock.monotonic()
                self.inbox.put(SensorDates(src.spec.id, dates[0], dates[1], offset))

    def engine_age_s(self) -> float | None:
        """Seconds since the engine loop last ticked (None before its first tick)."""
        return None if self.last_tick is None else self.clock.monotonic() - self.last_tick

    def _liveness(self, now: float) -> None:
        self.last_tick = now
        if not self.ready:
            self.ready = True
            self.ready_at = now
            self.notifier.ready(f"site {self.cfg.site.id} gateway {self.cfg.site.gateway_id}")
            log.info("gateway_ready", start_to_ready_ms=round((now - self.started_mono) * 1000, 1))
        if self._wd_every is not None and now - self._last_wd >= min(self._wd_every, 1.0):
            self._last_wd = now
            self.notifier.watchdog()

    def apply(self, ev: Event) -> None:
        """One engine step and its actions. An event the engine refuses is counted, never fatal."""
        now = self.clock.monotonic()
        prev = self.state
        t0 = time.perf_counter()
        try:
            self.state, actions = engine.step(self.state, ev, now, self.ecfg)
        except engine.EngineError as exc:
            self.rejected_events += 1
            log.warning("event_rejected", event=type(ev).__name__, reason=str(exc))
            return
        if isinstance(ev, Reading):
            self._reading_out(ev)
        self._acted(prev, actions, now)
        self.metrics.engine_step.observe(time.perf_counter() - t0)

    def apply_readings(self, evs: list[Reading]) -> None:
        """Telemetry readings in one engine step (engine.step_readings: same outcome as one by one).
        Should the engine refuse the batch (an unknown signal), each is applied alone and only that
        one is refused."""
        now = self.clock.monotonic()
        prev = self.state
        t0 = time.perf_counter()
        try:
            self.state, actions = engine.step_readings(self.state, evs, now, self.ecfg)
        except engine.EngineError:
            for ev in evs:
                self.apply(ev)
            return
        for ev in evs:
            self._reading_out(ev)
        self._acted(prev, actions, now)
        self.metrics.engine_step.observe(time.perf_counter() - t0)

    def _reading_out(self, ev: Reading) -> None:
        """What a reading feeds besides the rules: the reading sinks (metrics, trends, telemetry, TSDB,
        Sparkplug), with the rules' verdict on it (an implausible value is BAD), never the raw quality."""
        self.readings_applied += 1
        sig = self.ecfg.signals[ev.signal]
        self.fanout.reading(gas.screen(ev, sig), sig)

    def _acted(self, prev: engine.EngineState, actions: tuple[Action, ...], now: float) -> None:
        if actions:
            self.fanout.step(Step(actions, prev, self.state, self.ecfg, now, iso(self.clock.utc())))

    # ---- state across restarts, and SIGHUP -------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _restore(self) -> None:
        saved = statefile.read(self.state_file)
        if saved is None:
            return
        self.state, skipped = persist.restore(self.state, saved, self.ecfg, self.clock.monotonic())
        self._saved_latches = persist.latched(self.state)
        log.warning(
            "state_restored",
            latched_signals=sorted(saved.get("signals") or {}),
            evacuations=sorted(saved.get("evacuations") or {}),
            output_fault=saved.get("output_fault"),
            skipped=skipped,
        )

    def _save_latches(self) -> None:
        now = persist.latched(self.state)
        if now == self._saved_latches:
            return
        try:
            statefile.write(self.state_file, now)
            self._saved_latches = now
        except OSError as exc:
            log.error("state_file_write_failed", path=str(self.state_file), error=str(exc))

    async def _saver(self) -> None:
        """Write the latches when they change (checked at most every 0.2 s, off the engine loop)."""
        while True:
            await self._save_wake.wait()
            self._save_wake.clear()
            now = persist.latched(self.state)
            if now != self._saved_latches:
                try:
                    await asyncio.to_thread(statefile.write, self.state_file, now)
                    self._saved_latches = now
                except OSError as exc:
                    log.error("state_file_write_failed", path=str(self.state_file), error=str(exc))
            await asyncio.sleep(0.2)

    def reload(self) -> None:
        """SIGHUP: re-read and validate the config, then report every changed setting as applied or
        as needing a restart (declared on the config model, gateway/config/reload.py). All or nothing: a
        change that needs a restart keeps the whole running configuration; an invalid file changes
        nothing. The outcome is logged and shown in /api/state (config.last_reload)."""
        from gateway.config.loader import load

        if self.config_path is None:
            log.warning("config_reload_ignored", why="started without a config file")
            return
        utc = iso(self.clock.utc())
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("config_reload_rejected", path=str(self.config_path), problems=problems,
                      kept="the running configuration")  # fmt: skip
            self._reloaded({"utc": utc, "result": "rejected", "problems": problems, "settings": []})
            return
        changed = reload_changes(self.cfg, new)
        restart = [c.setting for c in changed if c.reload is Reload.RESTART]
        if restart:
            waiting = [c.setting for c in changed if c.reload is Reload.LIVE]
            log.warning("config_reload_needs_restart", needs_restart=restart, waits_for_restart=waiting,
                        kept="the running configuration", fix="systemctl restart edge-gateway")  # fmt: skip
            settings = [{"setting": c.setting, "status": "needs restart" if c.reload is Reload.RESTART
                         else "waits for the restart"} for c in changed]  # fmt: skip
            self._reloaded({"utc": utc, "result": "needs_restart", "problems": [], "settings": settings})
            return
        self.cfg, self.ecfg, self.config_hash = new, engine_cfg(new), config_hash(self.config_path)
        self.people = {p.id: p.name for p in new.people}
        self.permits.cfg = new
        self.permits.load_dir()
        applied = [c.setting for c in changed]
        log.info("config_reloaded", config_hash=self.config_hash, applied=applied)
        self._reloaded({"utc": utc, "result": "applied" if applied else "unchanged", "problems": [],
                        "settings": [{"setting": x, "status": "applied"} for x in applied]})  # fmt: skip
        self.hub.changed()


    def _reloaded(self, outcome: dict[str, object]) -> None:
        """A reload's outcome: for /api/state and the audit chain."""
        self.last_reload = outcome
        self.records.audit_line("config_reload", {"config_hash": self.config_hash, **outcome})

def config_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def previous_stop(last_kind: str | None) -> str:
    """How the previous run ended, from the last record it left: "clean" (its stop record),
    "unclean" (a crash, kill -9, power cut: anything else last) or "none" (a new chain)."""
    if last_kind is None:
        return "none"
    return "clean" if last_kind == "gateway_stopped" else "unclean"

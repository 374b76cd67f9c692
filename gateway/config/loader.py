"""Load, cross-check and translate the configuration.

Every problem is collected (not just the first) with a dotted path that uses ids, e.g.
`devices.gas-1.points.t101_o2.address`, and a hint that says how to fix it.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from gateway.config import ConfigError, GatewayConfig, Machine, Problem
from rules.condition import MachineCfg
from rules.config import EngineCfg, OutputCfg, OutputKind, Quantity, SignalCfg, ZoneCfg, ZoneKind
from rules.confined import Roster
from rules.interlock import HotWorkCfg
from rules.presence import PresenceCfg
from rules.profiles import UNITS, ProfileError, resolve
from rules.vibration import BaselineCfg, IsoCfg

_HINTS = {
    "extra_forbidden": "remove it, or check its spelling against config/example-plant.toml",
    "missing": "add it; see config/example-plant.toml",
    "literal_error": "use one of the values listed",
    "enum": "use one of the values listed",
    "string_pattern_mismatch": "ids use letters, digits, '_', '-' and '.', starting with a letter or digit",
}


def _dotted(loc: tuple[int | str, ...], raw: Any) -> str:
    """('devices', 0, 'points', 1, 'address') -> 'devices.gas-1.points.t101_o2.address'."""
    parts: list[str] = []
    node = raw
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node):
            item = node[key]
            label = (item.get("id") or item.get("signal")) if isinstance(item, dict) else None
            parts.append(str(label) if label else str(key))
            node = item
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts)


def parse(raw: dict[str, Any], source: str = "<config>", base: Path | None = None) -> GatewayConfig:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(path=_dotted(tuple(e["loc"]), raw) or "(top)", message=e["msg"], hint=_HINTS.get(e["type"], ""))
            for e in exc.errors()
        ]
        raise ConfigError(source, problems) from None
    problems = cross_check(cfg, base or Path("."))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(p), [Problem(path="(file)", message="not found", hint="check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [Problem(path="(file)", message=f"unreadable: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [Problem(path="(toml)", message=str(exc), hint="fix the TOML syntax")]) from None
    return parse(raw, str(p), p.parent)


def resolve_path(base: Path, p: Path) -> Path:
    """A path from the config, relative to the config file's folder unless absolute."""
    return p if p.is_absolute() else base / p


def read_secret(base: Path, p: Path | None) -> str | None:
    """A secret from its file (password, token), read when needed and never kept in the config."""
    return None if p is None else resolve_path(base, p).read_text(encoding="utf-8").strip()


def cross_check(cfg: GatewayConfig, base: Path) -> list[Problem]:
    out: list[Problem] = []
    for kind, ids in (
        ("zones", [z.id for z in cfg.zones]),
        ("devices", [d.id for d in cfg.devices]),
        ("signals", [s.id for s in cfg.signals]),
        ("outputs", [o.id for o in cfg.outputs]),
        ("people", [p.id for p in cfg.people]),
        ("receivers", [r.id for r in cfg.receivers]),
        ("badges", [b.beacon for b in cfg.badges]),
        ("face_terminals", [t.id for t in cfg.face_terminals]),
        ("machines", [m.id for m in cfg.machines]),
    ):
        out += [
            Problem(path=f"{kind}.{i}", message=f"duplicate id {i!r} ({n} times)", hint="ids must be unique")
            for i, n in Counter(ids).items()
            if n > 1
        ]
    out += _references(cfg)
    out += _devices(cfg)
    out += _signals(cfg)
    out += _outputs(cfg)
    out += _machines(cfg)
    out += _tuning(cfg)
    out += _files(cfg, base)
    try:
        ipaddress.ip_address(cfg.status.bind)
    except ValueError:
        out.append(
            Problem(path="status.bind", message=f"not an IP address: {cfg.status.bind!r}", hint="e.g. 127.0.0.1")
        )
    return out


def _references(cfg: GatewayConfig) -> list[Problem]:
    """Every id one section names in another (zone, device, signal, output, person): checked here
    only, once, so that the other checks and the translation to the rules may rely on them."""
    zones = {z.id for z in cfg.zones}
    devices = {d.id: d for d in cfg.devices}
    signals = {s.id for s in cfg.signals}
    outputs = {o.id for o in cfg.outputs}
    out: list[Problem] = []
    hint_zone = f"known zones: {sorted(zones)}"
    for s in cfg.signals:
        if s.zone not in zones:
            out.append(Problem(path=f"signals.{s.id}.zone", message=f"unknown zone {s.zone!r}", hint=hint_zone))
    for o in cfg.outputs:
        if o.zone not in zones:
            out.append(Problem(path=f"outputs.{o.id}.zone", message=f"unknown zone {o.zone!r}", hint=hint_zone))
        if o.device not in devices:
            out.append(
                Problem(
                    path=f"outputs.{o.id}.device",
                    message=f"unknown device {o.device!r}",
                    hint="declare it under [[devices]]",
                )
            )
    people = {p.id for p in cfg.people}
    for r in cfg.receivers:
        if r.zone not in zones:
            out.append(Problem(path=f"receivers.{r.id}.zone", message=f"unknown zone {r.zone!r}", hint=hint_zone))
        if r.kind == "espresense" and not r.room:
            out.append(Problem(path=f"receivers.{r.id}.room", message="an ESPresense receiver needs its room name"))
    for b in cfg.badges:
        if b.person not in people:
            out.append(
                Problem(path=f"badges.{b.beacon}.person", message=f"unknown person {b.person!r}", hint="add [[people]]")
            )
    for z in cfg.zones:
        at = f"zones.{z.id}"
        if z.entrance is not None and z.entrance not in zones:
            out.append(Problem(path=f"{at}.entrance", message=f"unknown zone {z.entrance!r}", hint=hint_zone))
        if (z.entrants or z.attendant or z.entrance) and z.kind is not ZoneKind.CONFINED_SPACE:
            out.append(Problem(path=at, message="entrance, entrants and attendant are for confined spaces"))
        for who in (*z.entrants, *([z.attendant] if z.attendant else [])):
            if who not in people:
                out.append(Problem(path=f"{at}.entrants", message=f"unknown person {who!r}", hint="add [[people]]"))
        if z.attendant and z.attendant in z.entrants:
            out.append(Problem(path=f"{at}.attendant", message="the attendant must stay outside, not be an entrant"))
    for t in cfg.face_terminals:
        if t.zone not in zones:
            out.append(Problem(path=f"face_terminals.{t.id}.zone", message=f"unknown zone {t.zone!r}", hint=hint_zone))
    for m in cfg.machines:
        at = f"machines.{m.id}"
        if m.zone not in zones:
            out.append(Problem(path=f"{at}.zone", message=f"unknown zone {m.zone!r}", hint=hint_zone))
        for name, sid in (("vibration_signal", m.vibration_signal), ("temperature_signal", m.temperature_signal)):
            if sid not in signals:
                out.append(Problem(path=f"{at}.{name}", message=f"unknown signal {sid!r}", hint="add [[signals]]"))
        if m.stop_output is not None and m.stop_output not in outputs:
            out.append(_not_machine_run(m))
    if cfg.permits.dir is not None and cfg.ledger.public_key_file is None:
        out.append(
            Problem(
                path="permits.dir",
                message="signed permits need the ledger's public key",
                hint="set ledger.public_key_file",
            )
        )
    mapped: Counter[str] = Counter()
    for d in cfg.devices:
        for p in d.points:
            mapped[p.signal] += 1
            if p.signal not in signals:
                out.append(
                    Problem(
                        path=f"devices.{d.id}.points.{p.signal}.signal",
                        message=f"unknown signal {p.signal!r}",
                        hint="declare it under [[signals]]",
                    )
                )
    for s in cfg.signals:
        if mapped[s.id] == 0:
            out.append(
                Problem(
                    path=f"signals.{s.id}", message="no device point reads this signal", hint="add a point to a device"
                )
            )
        elif mapped[s.id] > 1:
            out.append(
                Problem(
                    path=f"signals.{s.id}", message=f"read by {mapped[s.id]} device points", hint="map it exactly once"
                )
            )
    return out


def _devices(cfg: GatewayConfig) -> list[Problem]:
    out: list[Problem] = []
    per_bus: dict[str, list[str]] = defaultdict(list)
    for d in cfg.devices:
        at = f"devices.{d.id}"
        if d.transport == "modbus_tcp" and d.port is None:
            out.append(Problem(path=f"{at}.port", message="modbus_tcp needs a port", hint="usually 502"))
        if d.transport == "modbus_rtu" and not d.serial_port:
            out.append(
                Problem(path=f"{at}.serial_port", message="modbus_rtu needs a serial_port", hint="e.g. /dev/ttyUSB0")
            )
        if d.transport.startswith("modbus"):
            per_bus[d.bus()].append(f"{d.unit_id}:{d.id}")
        used: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for p in d.points:
            pat = f"{at}.points.{p.signal}"
            if d.transport == "mqtt":
                if not p.topic:
                    out.append(
                        Problem(path=f"{pat}.topic", message="an MQTT point needs a topic", hint="e.g. plant/gas/1")
                    )
                continue
            if p.address is None:
                out.append(Problem(path=f"{pat}.address", message="a Modbus point needs an address", hint="0-based"))
                continue
            if p.topic:
                out.append(Problem(path=f"{pat}.topic", message="topic is for MQTT devices", hint="remove it"))
            if p.current_loop is not None and p.current_loop[0] >= p.current_loop[1]:
                out.append(
                    Problem(path=f"{pat}.current_loop", message="range must rise: (value at 4 mA, value at 20 mA)")
                )
            lo, hi = p.address, p.address + p.registers() - 1
            for olo, ohi, other in used[p.table]:
                if lo <= ohi and olo <= hi:
                    out.append(
                        Problem(
                            path=f"{pat}.address",
                            message=f"{p.table} registers {lo}-{hi} overlap {other} ({olo}-{ohi})",
                            hint="each point needs its own registers",
                        )
                    )
            used[p.table].append((lo, hi, p.signal))
    for bus, units in per_bus.items():
        ids = Counter(u.split(":", 1)[0] for u in units)
        for uid, n in ids.items():
            if n > 1:
                names = [u.split(":", 1)[1] for u in units if u.split(":", 1)[0] == uid]
                out.append(
                    Problem(
                        path=f"devices.{names[1]}.unit_id", message=f"unit id {uid} on bus {bus} is also {names[0]}"
                    )
                )
    return out


def _signals(cfg: GatewayConfig) -> list[Problem]:
    out: list[Problem] = []
    zones = {z.id: z for z in cfg.zones}
    for s in cfg.signals:
        at = f"signals.{s.id}"
        if s.unit not in UNITS[s.quantity]:
            out.append(
                Problem(
                    path=f"{at}.unit",
                    message=f"unknown unit {s.unit!r} for {s.quantity.value}",
                    hint=f"use {UNITS[s.quantity]}",
                )
            )
            continue
        confined = s.zone in zones and zones[s.zone].kind is ZoneKind.CONFINED_SPACE
        try:
            resolve(s.profile or cfg.site.profile, s.quantity, s.unit, confined=confined, overrides=s.thresholds)
        except ProfileError as exc:
            out.append(Problem(path=f"{at}.thresholds", message=str(exc), hint="see DOMAIN defaults in README"))
    return out


_PERMISSIVES = frozenset({OutputKind.GAS_PERMISSIVE, OutputKind.IGNITION, OutputKind.MACHINE_RUN})
"""Outputs that permit something: safe is their inactive (not permitted) state."""


def _outputs(cfg: GatewayConfig) -> list[Problem]:
    out: list[Problem] = []
    devices = {d.id: d for d in cfg.devices}
    coils: dict[tuple[str, int], str] = {}
    for o in cfg.outputs:
        at = f"outputs.{o.id}"
        d = devices.get(o.device)
        if d is None:
            continue
        if not d.transport.startswith("modbus"):
            out.append(Problem(path=f"{at}.device", message=f"{d.id} is not a Modbus device", hint="outputs are coils"))
        if d.watchdog is None:
            out.append(
                Problem(
                    path=f"devices.{d.id}.watchdog",
                    message="a device that drives outputs needs its host watchdog configured",
                    hint="so that outputs drop by themselves if this daemon hangs (DOMAIN.md)",
                )
            )
        key = (o.device, o.coil)
        if key in coils:
            out.append(Problem(path=f"{at}.coil", message=f"coil {o.coil} on {o.device} is also {coils[key]}"))
        coils[key] = o.id
        if o.kind in _PERMISSIVES and o.safe != (not o.active_energized):
            out.append(
                Problem(
                    path=f"{at}.safe",
                    message=f"a {o.kind.value} output's safe state must be its inactive state (not permitted)",
                    hint="set safe = false with active_energized = true (de-energize to trip)",
                )
            )
        if o.kind is OutputKind.TROUBLE and (o.safe or not o.active_energized):
            out.append(
                Problem(
                    path=f"{at}.safe",
                    message="a trouble output must be energized only while the gateway is healthy, so that its "
                    "de-energized contact announces a dead, hung or faulted gateway",
                    hint="set safe = false with active_energized = true and wire the lamp or buzzer to the "
                    "normally-closed contact (docs/deploy.md, 'The trouble output')",
                )
            )
    return dedupe(out)


def _not_machine_run(m: Machine) -> Problem:
    return Problem(
        path=f"machines.{m.id}.stop_output",
        message=f"{m.stop_output!r} is not an output of kind machine_run",
        hint='declare it under [[outputs]] with kind = "machine_run"',
    )


def _machines(cfg: GatewayConfig) -> list[Problem]:
    """What a machine needs beyond its references (checked by `_references`)."""
    out: list[Problem] = []
    signals = {s.id: s for s in cfg.signals}
    outputs = {o.id: o for o in cfg.outputs}
    for m in cfg.machines:
        at = f"machines.{m.id}"
        if m.id in signals or m.id in ("outputs", "*"):
            out.append(Problem(path=f"{at}.id", message="also a signal id (or reserved)", hint="acks name either"))
        for name, sid, quantity in (
            ("vibration_signal", m.vibration_signal, Quantity.VIBRATION),
            ("temperature_signal", m.temperature_signal, Quantity.TEMPERATURE),
        ):
            sig = signals.get(sid)
            if sig is not None and sig.quantity is not quantity:
                out.append(
                    Problem(
                        path=f"{at}.{name}", message=f"{sid!r} is a {sig.quantity.value} signal, not {quantity.value}"
                    )
                )
        o = outputs.get(m.stop_output) if m.stop_output is not None else None
        if o is not None and o.kind is not OutputKind.MACHINE_RUN:
            out.append(_not_machine_run(m))
        try:
            machine_cfg(cfg, m)
        except ValueError as exc:  # MachineCfgError / IsoCfgError: limits that cannot be right
            out.append(Problem(path=at, message=str(exc)))
    named = {m.stop_output for m in cfg.machines}
    for o in cfg.outputs:
        if o.kind is OutputKind.MACHINE_RUN and o.id not in named:
            out.append(
                Problem(
                    path=f"outputs.{o.id}",
                    message="no [[machines]] entry names this machine_run output: it would never be released",
                    hint="add a [[machines]] section with stop_output = " + repr(o.id),
                )
            )
    for d in cfg.devices:
        for p in d.points:
            if p.waveform and (
                d.transport != "mqtt"
                or signals.get(p.signal) is None
                or signals[p.signal].quantity is not Quantity.VIBRATION
            ):
                out.append(
                    Problem(
                        path=f"devices.{d.id}.points.{p.signal}.waveform",
                        message="waveform points are MQTT points of vibration signals",
                    )
                )
    return out


def machine_cfg(cfg: GatewayConfig, m: Machine) -> MachineCfg:
    """Translate one [[machines]] section; raises ValueError (MachineCfgError) for impossible limits."""
    sig = {s.id: s for s in cfg.signals}
    vib, temp = sig.get(m.vibration_signal), sig.get(m.temperature_signal)
    return MachineCfg(
        id=m.id,
        zone=m.zone,
        vibration_signal=m.vibration_signal,
        temperature_signal=m.temperature_signal,
        iso=IsoCfg(group=m.group, foundation=m.foundation),
        insulation=m.insulation,
        rate_of_rise_k_per_min=m.rate_of_rise_k_per_min,
        stop_output=m.stop_output,
        baseline=BaselineCfg(learn_count=m.baseline_learn_count),
        temperature_alarm_c=m.temperature_alarm_c,
        temperature_trip_c=m.temperature_trip_c,
        vibration_stale_s=cfg.stale_after(vib) if vib else 5.0,
        temperature_stale_s=cfg.stale_after(temp) if temp else 5.0,
        fault_stops_machine=m.fault_stops_machine,
    )


def hot_work_cfg(cfg: GatewayConfig) -> HotWorkCfg:
    """Translate [hot_work]; raises ValueError for timings the interlock refuses."""
    hw = cfg.hot_work
    return HotWorkCfg(
        face_window_s=hw.face_window_s,
        face_presence_s=hw.face_presence_s,
        face_hold_s=hw.face_hold_s,
        presence_fresh_s=cfg.presence.absent_after_s,
        gas_test_validity_s=hw.gas_test_validity_s,
        break_retest_s=hw.break_retest_s,
        warn_before_s=hw.warn_before_s,
        fire_watch_after_s=hw.fire_watch_after_s,
    )


def presence_cfg(cfg: GatewayConfig) -> PresenceCfg | None:
    """Translate [presence] and the receivers (None: no receiver); raises ValueError for a tuning it refuses."""
    p = cfg.presence
    receivers = {r.id: r.zone for r in cfg.receivers}
    return PresenceCfg(receivers, p.alpha, p.switch_db, p.switch_hold_s, p.absent_after_s) if receivers else None


def _tuning(cfg: GatewayConfig) -> list[Problem]:
    """The rules check their own tuning when it is built: build it here, so that a value they refuse is a
    problem of this file (named by its section), not a daemon that cannot start or reload."""
    out: list[Problem] = []
    for path, build in (("hot_work", hot_work_cfg), ("presence", presence_cfg)):
        try:
            build(cfg)
        except ValueError as exc:
            out.append(Problem(path=path, message=str(exc)))
    return out


def _files(cfg: GatewayConfig, base: Path) -> list[Problem]:
    out: list[Problem] = []
    files: list[tuple[str, Path | None]] = [
        ("mqtt.password_file", cfg.mqtt.password_file),
        ("ledger.public_key_file", cfg.ledger.public_key_file),
        ("ledger.token_file", cfg.ledger.token_file),
        ("tsdb.token_file", cfg.tsdb.token_file),
    ]
    if cfg.mqtt.tls:
        files += [
            ("mqtt.tls.ca_file", cfg.mqtt.tls.ca_file),
            ("mqtt.tls.cert_file", cfg.mqtt.tls.cert_file),
            ("mqtt.tls.key_file", cfg.mqtt.tls.key_file),
        ]
    files += [(f"face_terminals.{t.id}.key_file", t.key_file) for t in cfg.face_terminals]
    for path, f in files:
        if f is not None and not resolve_path(base, f).is_file():
            out.append(
                Problem(path=path, message=f"file not found: {resolve_path(base, f)}", hint="create it or fix the path")
            )
    return out


def dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out


def engine_cfg(cfg: GatewayConfig) -> EngineCfg:
    """Translate the validated config into the pure rules' config.

    Only for a config `parse` accepted: its references were checked there (`_references`) and
    are not checked again, here or in EngineCfg."""
    zones = {z.id: ZoneCfg(z.id, z.kind, z.name, z.max_occupancy) for z in cfg.zones}
    signals = {}
    for s in cfg.signals:
        src = cfg.source_of(s.id)
        r = resolve(
            s.profile or cfg.site.profile,
            s.quantity,
            s.unit,
            confined=zones[s.zone].kind is ZoneKind.CONFINED_SPACE,
            overrides=s.thresholds,
        )
        signals[s.id] = SignalCfg(
            id=s.id,
            quantity=s.quantity.value,
            unit=s.unit,
            zone=s.zone,
            device=src[0].id if src else "",
            limits=r.limits,
            stale_after_s=cfg.stale_after(s),
            hot_work_max=r.hot_work_max,
            over_range=r.over_range,
            under_range=r.under_range,
        )
    outputs = {o.id: OutputCfg(o.id, o.kind, o.zone, o.safe, o.active_energized) for o in cfg.outputs}
    return EngineCfg(
        signals=MappingProxyType(signals),
        zones=MappingProxyType(zones),
        outputs=MappingProxyType(outputs),
        silence_s=cfg.engine.silence_s,
        hazard_dedup_s=cfg.engine.hazard_dedup_s,
        hazard_recur_n=cfg.engine.hazard_recur_n,
        hazard_recur_days=cfg.engine.hazard_recur_days,
        presence=presence_cfg(cfg),
        badges=MappingProxyType({b.beacon: b.person for b in cfg.badges}),
        rosters=MappingProxyType(
            {
                z.id: Roster(frozenset(z.entrants), z.attendant, z.max_occupancy)
                for z in cfg.zones
                if z.kind is ZoneKind.CONFINED_SPACE and (z.entrants or z.attendant)
            }
        ),
        entrances=MappingProxyType({z.id: z.entrance for z in cfg.zones if z.entrance}),
        # Only detectors that report both dates are tracked; until read, their signals count as overdue.
        sensor_intervals=MappingProxyType(
            {
                d.id: (d.status.bump_interval_h * 3600.0, d.status.calibration_interval_days * 86400.0)
                for d in cfg.devices
                if d.status is not None
                and d.status.bump_address is not None
                and d.status.calibration_address is not None
            }
        ),
        machines=MappingProxyType({m.id: machine_cfg(cfg, m) for m in cfg.machines}),
        hot_work=hot_work_cfg(cfg),
    )

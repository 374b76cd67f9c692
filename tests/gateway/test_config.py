"""Configuration: the shipped examples validate; every kind of mistake names its place."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError
from gateway.config.loader import engine_cfg, load, parse
from rules.config import EngineCfg, Severity
from rules.interlock import HotWorkCfg
from rules.presence import PresenceCfg

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"
EXAMPLE = ROOT / "config" / "example-plant.toml"


def base() -> dict[str, Any]:
    return tomllib.loads(DEMO.read_text())


def dev(raw: dict[str, Any], did: str) -> dict[str, Any]:
    return next(d for d in raw["devices"] if d["id"] == did)


def sig(raw: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in raw["signals"] if s["id"] == sid)


def _dup_zone(r: dict[str, Any]) -> None:
    r["zones"].append(dict(r["zones"][0]))


def _unknown_zone(r: dict[str, Any]) -> None:
    sig(r, "t101_o2")["zone"] = "tank-t999"


def _overlap(r: dict[str, Any]) -> None:
    dev(r, "gas-t101")["points"][1]["address"] = 1  # LEL on top of O2


def _float_overlap(r: dict[str, Any]) -> None:
    dev(r, "gas-t101")["points"][0].update(type="float32")  # O2 float32 at 1-2 overlaps LEL at 2


def _unknown_unit(r: dict[str, Any]) -> None:
    sig(r, "t101_h2s")["unit"] = "ppb"


def _order(r: dict[str, Any]) -> None:
    sig(r, "t101_lel")["thresholds"] = {"alarm1": 25.0}  # above alarm2 = 20


def _missing_key(r: dict[str, Any]) -> None:
    r["ledger"] = {"url": "https://ledger.local", "public_key_file": "/nonexistent/ledger.pub"}


def _unknown_key(r: dict[str, Any]) -> None:
    r["site"]["profil"] = "gb"


def _bad_profile(r: dict[str, Any]) -> None:
    r["site"]["profile"] = "iso"


def _output_unknown_device(r: dict[str, Any]) -> None:
    r["outputs"][0]["device"] = "relay-9"


def _no_watchdog(r: dict[str, Any]) -> None:
    del dev(r, "relay-1")["watchdog"]


def _dup_coil(r: dict[str, Any]) -> None:
    r["outputs"][1]["coil"] = r["outputs"][0]["coil"]


def _unmapped(r: dict[str, Any]) -> None:
    r["signals"].append({"id": "t101_extra", "quantity": "co", "unit": "ppm", "zone": "tank-t101"})


def _permissive_safe_true(r: dict[str, Any]) -> None:
    r["outputs"][0]["safe"] = True


def _bad_mqtt_url(r: dict[str, Any]) -> None:
    r["mqtt"]["url"] = "http://broker:1883"


def _rtu_without_port(r: dict[str, Any]) -> None:
    d = dev(r, "gas-t101")
    d["transport"] = "modbus_rtu"


def _negative_poll(r: dict[str, Any]) -> None:
    dev(r, "gas-t101")["poll_s"] = 0


def _bad_id(r: dict[str, Any]) -> None:
    r["zones"][1]["id"] = "bay 2!"


def _bad_zone_kind(r: dict[str, Any]) -> None:
    r["zones"][0]["kind"] = "tank"


def _machine(r: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in r["machines"] if m["id"] == "p201")


def _machine_unknown_zone(r: dict[str, Any]) -> None:
    _machine(r)["zone"] = "pump-room-9"


def _machine_unknown_signal(r: dict[str, Any]) -> None:
    _machine(r)["vibration_signal"] = "p201_vib_9"


def _machine_stop_not_machine_run(r: dict[str, Any]) -> None:
    _machine(r)["stop_output"] = "t101_horn"


def _warnings_the_interlock_refuses(r: dict[str, Any]) -> None:
    r["hot_work"] = {"warn_before_s": [300, 300]}


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("duplicate zone id", _dup_zone, "zones.tank-t101", "duplicate id"),
    ("unknown zone referenced", _unknown_zone, "signals.t101_o2.zone", "unknown zone 'tank-t999'"),
    ("overlapping Modbus addresses", _overlap, "devices.gas-t101.points.t101_lel.address", "overlap t101_o2"),
    ("float32 spans into the next point", _float_overlap, "devices.gas-t101.points.t101_lel.address", "overlap"),
    ("unknown unit", _unknown_unit, "signals.t101_h2s.unit", "unknown unit 'ppb'"),
    ("thresholds out of order", _order, "signals.t101_lel.thresholds", "out of order"),
    ("missing key file", _missing_key, "ledger.public_key_file", "file not found"),
    ("unknown key", _unknown_key, "site.profil", "Extra inputs are not permitted"),
    ("unknown profile", _bad_profile, "site.profile", "'osha' or 'gb'"),
    ("output on unknown device", _output_unknown_device, "outputs.t101_permissive.device", "unknown device"),
    ("relay module without watchdog", _no_watchdog, "devices.relay-1.watchdog", "host watchdog"),
    ("two outputs on one coil", _dup_coil, "outputs.t101_horn.coil", "also t101_permissive"),
    ("signal read by no device", _unmapped, "signals.t101_extra", "no device point"),
    ("permissive energized when safe", _permissive_safe_true, "outputs.t101_permissive.safe", "safe state"),
    ("bad MQTT URL scheme", _bad_mqtt_url, "mqtt.url", "mqtt://"),
    ("RTU without a serial port", _rtu_without_port, "devices.gas-t101.serial_port", "needs a serial_port"),
    ("non-positive poll period", _negative_poll, "devices.gas-t101.poll_s", "greater than 0"),
    ("id with spaces", _bad_id, "zones.bay 2!.id", "pattern"),
    ("zone kind not a ZoneKind", _bad_zone_kind, "zones.tank-t101.kind", "'confined_space', 'hot_work' or 'general'"),
    ("machine in unknown zone", _machine_unknown_zone, "machines.p201.zone", "unknown zone 'pump-room-9'"),
    ("machine on unknown signal", _machine_unknown_signal, "machines.p201.vibration_signal", "unknown signal"),
    ("machine stop output of another kind", _machine_stop_not_machine_run, "machines.p201.stop_output", "machine_run"),
    ("hot-work timings the interlock refuses", _warnings_the_interlock_refuses, "hot_work", "distinct positive"),
]


@pytest.mark.parametrize(("name", "mutate", "path", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_names_its_place(name: str, mutate: Callable[[dict[str, Any]], None], path: str, text: str) -> None:
    raw = copy.deepcopy(base())
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse(raw, "demo.toml", DEMO.parent)
    found = [(p.path, p.message) for p in info.value.problems]
    assert any(p == path and text in m for p, m in found), f"{name}: wanted {path}: ...{text}... in {found}"


def test_every_problem_is_reported_at_once() -> None:
    raw = copy.deepcopy(base())
    _unknown_zone(raw)
    _unknown_unit(raw)
    _dup_coil(raw)
    with pytest.raises(ConfigError) as info:
        parse(raw, "demo.toml", DEMO.parent)
    paths = {p.path for p in info.value.problems}
    assert {"signals.t101_o2.zone", "signals.t101_h2s.unit", "outputs.t101_horn.coil"} <= paths


def test_a_broken_reference_is_reported_once_with_its_hint() -> None:
    raw = copy.deepcopy(base())
    _machine_unknown_zone(raw)
    _machine_unknown_signal(raw)
    _machine(raw)["stop_output"] = "p201_run_9"
    with pytest.raises(ConfigError) as info:
        parse(raw, "demo.toml", DEMO.parent)
    problems = [(p.path, p.message, p.hint) for p in info.value.problems]
    assert len(problems) == len(set(problems)), problems
    refs = [p for p in problems if p[0] in {"machines.p201.zone", "machines.p201.vibration_signal"}]
    assert refs == [
        ("machines.p201.zone", "unknown zone 'pump-room-9'", "known zones: ['bay-2', 'pump-room', 'tank-t101']"),
        ("machines.p201.vibration_signal", "unknown signal 'p201_vib_9'", "add [[signals]]"),
    ]
    assert [p[0] for p in problems].count("machines.p201.stop_output") == 1


def test_an_enum_value_error_keeps_the_hint() -> None:
    raw = copy.deepcopy(base())
    _bad_profile(raw)
    with pytest.raises(ConfigError) as info:
        parse(raw, "demo.toml", DEMO.parent)
    (p,) = [p for p in info.value.problems if p.path == "site.profile"]
    assert (p.message, p.hint) == ("Input should be 'osha' or 'gb'", "use one of the values listed")


def test_unset_settings_get_the_rules_own_defaults() -> None:
    """The models copy no default: a config that sets nothing gives the rules' dataclass defaults."""
    raw = copy.deepcopy(base())
    raw.pop("engine", None)
    raw.pop("hot_work", None)
    raw.pop("presence", None)
    raw["receivers"] = [{"id": "gw-hci0", "zone": "bay-2"}]
    ecfg = engine_cfg(parse(raw, "demo.toml", DEMO.parent))
    rules = EngineCfg()
    assert (ecfg.silence_s, ecfg.hazard_dedup_s, ecfg.hazard_recur_n, ecfg.hazard_recur_days) == (
        rules.silence_s,
        rules.hazard_dedup_s,
        rules.hazard_recur_n,
        rules.hazard_recur_days,
    )
    assert ecfg.hot_work == HotWorkCfg()
    assert ecfg.presence == PresenceCfg({"gw-hci0": "bay-2"})


@pytest.mark.parametrize("path", [DEMO, EXAMPLE], ids=["demo", "example-plant"])
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load(path)
    ecfg = engine_cfg(cfg)
    assert ecfg.signals and ecfg.outputs


def test_example_plant_is_the_realistic_area() -> None:
    cfg = load(EXAMPLE)
    kinds = {z.kind for z in cfg.zones}
    assert kinds == {"confined_space", "hot_work", "general"}
    assert sum(s.quantity in ("o2", "lel", "h2s", "co") for s in cfg.signals) == 8
    assert sum(s.quantity == "vibration" for s in cfg.signals) == 2
    assert sum(d.watchdog is not None for d in cfg.devices) == 1
    assert len(cfg.receivers) == 3


def test_profile_defaults_and_overrides_reach_the_rules() -> None:
    ecfg = engine_cfg(load(EXAMPLE))
    o2 = {lim.name: lim for lim in ecfg.signals["t101_o2"].limits}
    assert (o2["low"].value, o2["low"].deadband, o2["low"].latching, o2["low"].severity) == (
        19.5,
        0.2,
        True,
        Severity.EVACUATE,
    )
    assert {lim.name: lim.value for lim in ecfg.signals["bay2_lel"].limits}["alarm1"] == 8.0
    assert ecfg.signals["t101_lel"].hot_work_max == 1.0  # confined space
    assert ecfg.signals["bay2_lel"].hot_work_max == 10.0
    assert ecfg.signals["t101_o2"].stale_after_s == 3.0  # 3 x poll 1 s
    assert ecfg.signals["bay2_o2"].stale_after_s == 1.5


def test_gb_profile_converts_mg_m3_to_ppm() -> None:
    raw = copy.deepcopy(base())
    raw["site"]["profile"] = "gb"
    cfg = parse(raw, "demo.toml", DEMO.parent)
    h2s = {lim.name: round(lim.value, 2) for lim in engine_cfg(cfg).signals["t101_h2s"].limits}
    assert h2s == {"alarm1": 7.17, "alarm2": 14.35}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_check_config_ok_prints_summary_exit_0() -> None:
    r = _cli("check-config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "refinery-north" in r.stdout and "tank-t101" in r.stdout and "receivers 3" in r.stdout


def test_check_config_unknown_zone_exit_2_names_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        DEMO.read_text().replace(
            'zone = "bay-2"\n\n[[signals]]\nid = "bay2_lel"', 'zone = "bay-9"\n\n[[signals]]\nid = "bay2_lel"'
        )
    )
    r = _cli("check-config", str(bad))
    assert r.returncode == 2
    assert "signals.bay2_o2.zone: unknown zone 'bay-9'" in r.stderr
    assert "hint:" in r.stderr


def test_check_config_toml_syntax_error_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nid=1")
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "(toml)" in r.stderr


def test_cli_usage_errors_exit_2() -> None:
    assert _cli("frobnicate").returncode == 2
    assert _cli("--log-level", "loud", "version").returncode == 2
    r = _cli("version")
    assert r.returncode == 0 and r.stdout.startswith("edge-gateway ")

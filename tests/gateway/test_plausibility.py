"""Valid but probably wrong settings are warned about, with the place and the documented range
(issue 18.6)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import engine_cfg, parse
from gateway.config.plausibility import warnings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"


def demo() -> dict[str, Any]:
    return tomllib.loads(DEMO.read_text())


def sig(raw: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in raw["signals"] if s["id"] == sid)


def warned(raw: dict[str, Any]) -> dict[str, str]:
    cfg = parse(raw, "demo.toml", DEMO.parent)
    return {w.path: w.message for w in warnings(cfg, engine_cfg(cfg))}


def test_the_shipped_demo_has_no_warning() -> None:
    assert warned(demo()) == {}


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda r: sig(r, "t101_lel").update(thresholds={"alarm1": 150.0, "alarm2": 160.0}),
         "signals[1] (t101_lel).thresholds.alarm1", "above the detector's range (0-100 %LEL)"),
        (lambda r: sig(r, "t101_h2s").update(thresholds={"alarm1": 500.0, "alarm2": 600.0}),
         "signals[2] (t101_h2s).thresholds.alarm1", "above the IDLH of H2S (100 ppm, NIOSH)"),
        (lambda r: sig(r, "t101_co").update(thresholds={"alarm1": 25.0, "alarm2": 50.0, "evacuate": 1500.0}),
         "signals[3] (t101_co).thresholds.evacuate", "above the IDLH of CO (1200 ppm, NIOSH)"),
        (lambda r: sig(r, "t101_o2").update(thresholds={"low": 15.0, "low_low": 14.0}),
         "signals[0] (t101_o2).thresholds.low", "outside 16-23.5 %vol"),
        (lambda r: sig(r, "t101_o2").update(stale_after_s=120),
         "signals[0] (t101_o2).stale_after_s", "at most 5 s"),
        (lambda r: r["site"].update(profile="gb"), "site.profile", "[verify]"),
        (lambda r: r["status"].update(bind="0.0.0.0"), "status.bind", "plain HTTP: put TLS in front"),
    ],
)  # fmt: skip
def test_each_implausible_setting_is_warned_with_its_place_and_range(change: Any, path: str, words: str) -> None:
    raw = demo()
    change(raw)
    got = warned(raw)
    assert path in got and words in got[path], got


def test_tls_in_front_or_loopback_is_not_warned() -> None:
    raw = demo()
    raw["status"].update(bind="0.0.0.0", secure_cookie=True)
    assert "status.bind" not in warned(raw)
    raw["status"].update(bind="::1", secure_cookie=False)
    assert "status.bind" not in warned(raw)


def test_check_config_prints_the_warnings_and_strict_makes_them_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gateway.config.tomlw import dumps

    raw = demo()
    raw["status"].update(bind="0.0.0.0")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(dumps(raw))
    cmd = [sys.executable, "-m", "gateway.app.cli", "check-config", str(cfg)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "OK with 1 warning(s)" in done.stdout, done.stdout + done.stderr
    assert "status.bind: 0.0.0.0 serves the status page beyond this box over plain HTTP" in done.stderr
    strict = subprocess.run([*cmd, "--strict"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert strict.returncode == 2 and "1 error(s) (--strict)" in strict.stderr, strict.stderr

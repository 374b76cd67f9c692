"""Settings that are valid but probably wrong: `check-config` warns (exit 0; `--strict` makes them
errors) and the daemon logs the same warnings at start.

Each warning names the setting by its dotted path and the documented range it left:

- a gas alarm level outside the instrument's range (LEL above 100 %LEL, where the detector
  reads over-range) or above the gas's IDLH (NIOSH: H2S 100 ppm, CO 1,200 ppm), where an
  alarm comes too late to matter;
- an O2 level outside 16-23.5 %vol (DOMAIN.md: 19.5 low, 23.5 high; below 16 %vol is
  already impaired judgement);
- a gas signal's `stale_after_s` above 5 s (DOMAIN.md: stale = 3 x poll, 5 s at most);
- the `gb` threshold profile, whose values came from secondary sources and are marked
  [verify] (confirm them against GB/T 50493-2019 and GB 30871-2022 for your site);
- the status page bound beyond loopback with no TLS in front (`secure_cookie` false):
  logins and cookies would cross the plant network in clear text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.config.models import GatewayConfig
from rules.config import EngineCfg
from rules.profiles import mg_m3_to_ppm
from rules.values import GAS_QUANTITIES

IDLH_PPM = {"h2s": 100.0, "co": 1200.0}
"""NIOSH Immediately Dangerous to Life or Health concentrations (NIOSH Pocket Guide)."""
O2_RANGE = (16.0, 23.5)
LEL_RANGE_MAX = 100.0
GAS_STALE_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class Warning_:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def warnings(cfg: GatewayConfig, ecfg: EngineCfg) -> list[Warning_]:
    out: list[Warning_] = []
    for i, s in enumerate(cfg.signals):
        sc = ecfg.signals.get(s.id)
        quantity = str(getattr(s.quantity, "value", s.quantity))
        if sc is None or quantity not in GAS_QUANTITIES:
            continue
        at = f"signals[{i}] ({s.id})"
        for lim in sc.limits:
            v = lim.value
            if quantity == "o2" and not O2_RANGE[0] <= v <= O2_RANGE[1]:
                out.append(Warning_(f"{at}.thresholds.{lim.name}", f"{v:g} %vol is outside {O2_RANGE[0]:g}-"
                                    f"{O2_RANGE[1]:g} %vol (DOMAIN.md O2 levels 19.5 / 18 / 23.5)"))  # fmt: skip
            elif quantity == "lel" and v > LEL_RANGE_MAX:
                out.append(Warning_(f"{at}.thresholds.{lim.name}", f"{v:g} %LEL is above the detector's range "
                                    f"(0-{LEL_RANGE_MAX:g} %LEL): it reads over-range first, and never alarms here"))
            elif quantity in IDLH_PPM:
                ppm = mg_m3_to_ppm(quantity, v) if sc.unit == "mg/m3" else v
                if ppm > IDLH_PPM[quantity]:
                    out.append(Warning_(f"{at}.thresholds.{lim.name}", f"{v:g} {sc.unit} is above the IDLH of "
                                        f"{quantity.upper()} ({IDLH_PPM[quantity]:g} ppm, NIOSH): the alarm comes "
                                        "too late to matter"))  # fmt: skip
        if sc.stale_after_s > GAS_STALE_MAX_S:
            out.append(Warning_(f"{at}.stale_after_s", f"{sc.stale_after_s:g} s on a gas signal: DOMAIN.md allows "
                                f"at most {GAS_STALE_MAX_S:g} s (3 x the poll period) before data counts as stale"))
    if str(getattr(cfg.site.profile, "value", cfg.site.profile)) == "gb" or any(
        str(getattr(s.profile, "value", s.profile)) == "gb" for s in cfg.signals
    ):
        out.append(Warning_("site.profile", "the gb profile's values came from secondary sources and are marked "
                            "[verify]: confirm them against GB/T 50493-2019 and GB 30871-2022 for this site"))
    if not _loopback(cfg.status.bind) and not cfg.status.secure_cookie:
        out.append(Warning_("status.bind", f"{cfg.status.bind} serves the status page beyond this box over plain "
                            "HTTP: put TLS in front (a reverse proxy) and set status.secure_cookie = true, or bind "
                            "127.0.0.1"))
    return out


def _loopback(bind: str) -> bool:
    if bind in ("localhost", ""):
        return bind == "localhost"
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


__all__ = ["Warning_", "warnings"]

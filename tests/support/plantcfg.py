"""A small plant for the pure engine (rules.engine), no I/O: a confined tank with its manway,
a hot-work bay, their gas signals, horn, beacon and ignition coil, five badged people and a
hot-work permit. Monotonic time 0 is UTC `OFFSET`.

(tests.support.plant is the other one: the demo config with simulated devices, for the daemon.)
"""

from __future__ import annotations

from types import MappingProxyType

from rules.config import EngineCfg, OutputCfg, OutputKind, SignalCfg, ZoneCfg, ZoneKind
from rules.confined import Roster
from rules.permit import Competency, GasTest, Permit, PermitState, PermitType, Person, Role
from rules.presence import PresenceCfg
from rules.profiles import resolve

WELDER, WATCH, ENTRANT_A, ENTRANT_B, ATTENDANT = "E1", "E2", "E3", "E4", "E5"
BADGE = {
    p: f"ibeacon:e5ca1ade-f007-ba11-0000-000000000000:1:{i}"
    for i, p in enumerate([WELDER, WATCH, ENTRANT_A, ENTRANT_B, ATTENDANT], 1)
}
STRANGER = "ibeacon:e5ca1ade-f007-ba11-0000-000000000000:9:9"
OFFSET = 1_700_000_000.0  # utc = mono + OFFSET


def _sig(sid: str, q: str, unit: str, zone: str, confined: bool) -> SignalCfg:
    r = resolve("osha", q, unit, confined=confined)
    return SignalCfg(sid, q, unit, zone, "det-" + zone, r.limits, 3.0, r.hot_work_max, r.over_range)


CFG = EngineCfg(
    zones=MappingProxyType(
        {
            "tank": ZoneCfg("tank", ZoneKind.CONFINED_SPACE, "Tank", 2),
            "manway": ZoneCfg("manway", ZoneKind.GENERAL, "Manway"),
            "bay": ZoneCfg("bay", ZoneKind.HOT_WORK, "Bay"),
        }
    ),
    signals=MappingProxyType(
        {
            "tank.o2": _sig("tank.o2", "o2", "%vol", "tank", True),
            "tank.lel": _sig("tank.lel", "lel", "%LEL", "tank", True),
            "bay.o2": _sig("bay.o2", "o2", "%vol", "bay", False),
            "bay.lel": _sig("bay.lel", "lel", "%LEL", "bay", False),
        }
    ),
    outputs=MappingProxyType(
        {
            "horn": OutputCfg("horn", OutputKind.HORN, "tank"),
            "beacon": OutputCfg("beacon", OutputKind.BEACON, "tank"),
            "ign": OutputCfg("ign", OutputKind.IGNITION, "bay"),
        }
    ),
    presence=PresenceCfg(receivers={"rx-tank": "tank", "rx-manway": "manway", "rx-bay": "bay"}),
    badges=MappingProxyType({b: p for p, b in BADGE.items()}),
    rosters=MappingProxyType({"tank": Roster(frozenset({ENTRANT_A, ENTRANT_B}), ATTENDANT, 2)}),
    entrances=MappingProxyType({"tank": "manway"}),
)
GOOD = {"tank.o2": 20.9, "tank.lel": 0.0, "bay.o2": 20.9, "bay.lel": 0.0}


def hot_work_permit(state: PermitState = PermitState.ACTIVE, valid_to_mono: float = 3600.0) -> Permit:
    """HW-1 in the bay for the welder and the fire watch, gas-tested, from a minute before OFFSET."""
    return Permit(
        permit_id="HW-1",
        type=PermitType.HOT_WORK,
        grade="second",
        site_id="site",
        zone_id="bay",
        valid_from=OFFSET - 60,
        valid_to=OFFSET + valid_to_mono,
        state=state,
        people=(Person(WELDER, Role.OPERATOR), Person(WATCH, Role.FIRE_WATCH), Person("E9", Role.ISSUER)),
        gas_tests=(GasTest(OFFSET - 30, "E9", 20.9, 0.0, 0.0, 0.0, "gx-1", OFFSET - 3600, OFFSET + 86400 * 30),),
        competencies=(Competency(WELDER, "HW-CERT-1", "hot_work", OFFSET + 86400 * 365),),
    )

"""Whether the gateway *knows* who is in a zone: unknown is never shown as "nobody inside".

A headcount is known only while at least one badge receiver that locates people in the zone
is up. With no receiver for the zone, or every one of them down (adapter lost, node silent),
the page, MQTT and the logs say "headcount unknown" and why, never an empty list that reads
as "the tank is empty" to an attendant or a rescuer.
"""

from __future__ import annotations

from rules.config import EngineCfg
from rules.engine import EngineState

KNOWN, UNKNOWN = "known", "unknown"


def presence_truth(s: EngineState, cfg: EngineCfg, zone: str) -> tuple[str, str]:
    """("known", "") or ("unknown", why) for `zone`."""
    receivers = cfg.presence.receivers if cfg.presence is not None else {}
    mine = sorted(r for r, z in receivers.items() if z == zone)
    if not mine:
        return UNKNOWN, "no badge receiver covers this zone"
    if all(r in s.plant.presence.down for r in mine):
        return UNKNOWN, "badge receiver down: " + ", ".join(mine)
    return KNOWN, ""


__all__ = ["KNOWN", "UNKNOWN", "presence_truth"]

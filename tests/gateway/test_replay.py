"""Interlock decisions recorded in the audit chain replay to the same decisions, or show the first difference."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gateway.ledger.audit import AuditLog
from gateway.ledger.replay import audit_replay_main, decision_records
from rules.engine import initial, step
from rules.events import FaceMatch, PermitUpdate, Reading, Sighting, Tick
from tests.support.plantcfg import BADGE, CFG, GOOD, OFFSET, WATCH, WELDER, hot_work_permit


def shift(path: Path) -> int:
    """Drive a release and a drop through the engine, recording decisions as the daemon does."""
    s = initial(CFG)
    t = 0.0
    events: list[object] = [PermitUpdate(hot_work_permit(), OFFSET)]
    events += [Reading(sid, v, 0.1) for sid, v in GOOD.items()]
    events += [Sighting(BADGE[WELDER], "rx-bay", -60.0, 0.2), Sighting(BADGE[WATCH], "rx-bay", -60.0, 0.2)]
    events += [FaceMatch("ft-bay", WELDER, 0.3, "utc", 1, "bay"), Reading("bay.lel", 12.0, 0.4), Tick()]
    n = 0
    with AuditLog(path) as log:
        for e in events:
            t += 0.1
            prev = s
            s, _ = step(s, e, t, CFG)  # type: ignore[arg-type]
            for rec in decision_records(prev, s, t, CFG):
                log.append(rec)
                n += 1
    return n


def test_recorded_decisions_replay_the_same(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    n = shift(path)
    assert n >= 3  # checklist changes, a release, a drop
    kinds = [json.loads(line)["record"]["released"] for line in path.read_text().splitlines()]
    assert True in kinds and kinds[-1] is False
    out = io.StringIO()
    assert audit_replay_main(path, out) == 0, out.getvalue()
    assert f"{n} interlock decision(s) replayed, all the same" in out.getvalue()


def test_a_different_recorded_decision_is_the_first_difference(tmp_path: Path) -> None:
    src = tmp_path / "audit.jsonl"
    shift(src)
    records = [json.loads(line)["record"] for line in src.read_text().splitlines()]
    i = next(k for k, r in enumerate(records) if r["released"])
    records[i]["released"] = False  # a log (validly chained) whose decision the rules do not reproduce
    bad = tmp_path / "other.jsonl"
    with AuditLog(bad) as log:
        for r in records:
            log.append(r)
    out = io.StringIO()
    assert audit_replay_main(bad, out) == 1
    assert "first difference: released: recorded False, replayed True" in out.getvalue()


def test_an_edited_log_is_refused_before_replay(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    shift(path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"released":true', '"released":false').replace('"released": true', '"released": false')
    if lines[1] == path.read_text().splitlines()[1]:
        lines[1] = lines[1].replace('"now":', '"now": 1e-9 +', 0) + " "  # any edit breaks the chain
    path.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    assert audit_replay_main(path, out) == 2
    assert "does not verify" in out.getvalue()

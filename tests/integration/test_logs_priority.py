"""Logs journald ranks (issue 18.4): under systemd every line carries the `<N>` priority prefix
journald reads, alarms and faults rank warning or worse, and library logs share the format.
Read back from a real daemon process whose stdout is "the journal" (JOURNAL_STREAM set)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.plant import HORN, ROOT, plant
from tests.support.procs import Mosquitto, wait_for

pytestmark = pytest.mark.slow

LINE = re.compile(r"^<([0-7])>(\{.*\})$")


async def test_every_line_has_a_journald_priority_and_alarms_rank_warning(broker: Mosquitto, tmp_path: Path) -> None:
    async with plant(broker.port, tmp_path / "state") as p:
        cfg = p.write(tmp_path / "gw.toml")
        out = tmp_path / "journal.txt"
        with out.open("wb") as f:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.app.cli", "run", "--config", str(cfg), cwd=ROOT,
                env={**os.environ, "JOURNAL_STREAM": "8:4242"}, stdout=f, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                await wait_for(lambda: b"gateway_ready" in out.read_bytes(), 20, what="ready")
                p.tank.set_value("o2", 19.0)
                await wait_for(lambda: p.relay.coils[HORN], 10, what="evacuate")
                await wait_for(lambda: b'"evacuation"' in out.read_bytes(), 10, what="evacuation logged")
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 20)
    lines = [x for x in out.read_text().splitlines() if x.strip()]
    parsed: list[tuple[int, dict[str, Any]]] = []
    for x in lines:
        m = LINE.match(x)
        assert m, f"a line without a priority prefix: {x[:160]}"
        parsed.append((int(m.group(1)), json.loads(m.group(2))))
    by_event: dict[str, list[int]] = {}
    for prio, body in parsed:
        by_event.setdefault(body["event"], []).append(prio)
        assert prio == {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}[body["level"]], body
    assert by_event["gateway_ready"] == [6]
    assert min(by_event["alarm_changed"]) <= 4  # an alarm in force is at least a warning
    assert max(by_event["evacuation"]) <= 4
    assert set(by_event["output_commanded"]) == {6}

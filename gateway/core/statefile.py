"""The state file: latched alarms, faults, evacuations and output faults, across restarts.

Written atomically (temporary file, fsync, rename, fsync of the folder) whenever the latched
part of the engine state changes; read once at start. A missing file is a first start; an
unreadable one is logged loudly and ignored (the detectors' first readings decide again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("statefile")


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("state_file_unreadable", path=str(path), error=str(exc), fix="check the disk; the file is ignored")
        return None
    if not isinstance(data, dict):
        log.error("state_file_unreadable", path=str(path), error="not a JSON object")
        return None
    return data

"""structlog set-up: JSON lines when stdout is not a TTY (journald, files), readable console when it is.

Under systemd (stdout connected to the journal: `JOURNAL_STREAM` is set), every line starts
with the syslog priority prefix `<N>` that journald reads and strips, so `journalctl -p
warning` shows exactly the warnings, errors and critical events. Libraries that log through
the standard `logging` module go through the same processors: one format, one priority rule.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
"""structlog level -> syslog priority (RFC 5424): what journald files each line under."""


def journald_prefix(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Remember the priority for the renderer (the prefix must come before the JSON)."""
    event["_priority"] = PRIORITY.get(method if method != "exception" else "error", 6)
    return event


class _Prefixed:
    """Wraps the JSON renderer: `<N>{...}` with N from the line's level."""

    def __init__(self, render: structlog.types.Processor) -> None:
        self._render = render

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        prio = event.pop("_priority", 6)
        return f"<{prio}>{self._render(logger, method, event)}"


def setup(level: str = "info", json: bool | None = None, journal: bool | None = None) -> None:
    """`journal`: prefix priorities (default: when systemd connected stdout to the journal)."""
    lvl = getattr(logging, level.upper(), None)
    if not isinstance(lvl, int):
        raise ValueError(f"--log-level: unknown level {level!r}; use debug, info, warning or error")
    as_json = (not sys.stdout.isatty()) if json is None else json
    to_journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        if to_journal:
            shared.append(journald_prefix)
            renderer = _Prefixed(renderer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib logging: same processors, same format and priority,
    # kept quiet below WARNING unless debugging.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(lvl, logging.WARNING))
    # pymodbus logs every failed request at ERROR; the driver reports device_down/recovered on change instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from tests.support.bluez import bluez_with_adapter
from tests.support.procs import Mosquitto, mosquitto

if TYPE_CHECKING:
    from firmware_sim.ble_badges import MockBluezBadges


TESTS = Path(__file__).resolve().parent
LAYERS = {
    "rules": "rules",
    "drivers": "drivers",
    "gateway": "unit",
    "integration": "integration",
    "browser": "browser",
    "ops": "ops",
}
"""tests/<folder>/ -> the marker its tests carry (registered in pyproject.toml; see tests/README.md)."""


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its folder's layer, so `pytest -m rules` (or `-m "not integration"`) runs a layer."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and (layer := LAYERS.get(path.relative_to(TESTS).parts[0])):
            item.add_marker(getattr(pytest.mark, layer))


def pytest_configure(config: pytest.Config) -> None:
    """Log as the daemon does on a console (gateway.app.logs), with plain tracebacks: structlog's
    default renders them with rich and every local variable, which can hold the event loop for
    over a second and trip a simulated relay module's 1 s watchdog in the middle of a test."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        cache_logger_on_first_use=False,
    )


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A real mosquitto for this test, stopped by pid afterwards."""
    with mosquitto() as b:
        yield b


@pytest.fixture
def bluez() -> Iterator[MockBluezBadges]:
    """A private mock BlueZ (its own dbus-daemon, stopped by pid) with adapter hci0, ready for badges."""
    with bluez_with_adapter("hci0") as sim:
        yield sim

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import structlog

from tests.support.bluez import bluez_with_adapter
from tests.support.procs import Mosquitto, mosquitto

if TYPE_CHECKING:
    from firmware_sim.ble_badges import MockBluezBadges


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

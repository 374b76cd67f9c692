from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import Mosquitto, mosquitto


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A real mosquitto for this test, stopped by pid afterwards."""
    with mosquitto() as b:
        yield b

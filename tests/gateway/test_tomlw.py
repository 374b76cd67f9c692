"""The TOML writer round-trips the shipped configurations through tomllib."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config.tomlw import dumps

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.toml", "example-plant.toml"])
def test_round_trip(name: str) -> None:
    raw = tomllib.loads((ROOT / "config" / name).read_text())
    assert tomllib.loads(dumps(raw)) == raw


def test_quotes_and_escapes_strings() -> None:
    raw = {"site": {"id": "a", "name": 'the "north" area\\ 3'}, "zones": [{"id": "z", "kind": "general"}]}
    assert tomllib.loads(dumps(raw)) == raw

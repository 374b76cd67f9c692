"""Contract test: schemathesis generates requests from docs/ledger-api.yaml and checks that the
reference ledger answers as the document says (status codes, content types, response schemas)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.procs import free_port, stop_pid, wait_port

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "docs" / "ledger-api.yaml")


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    db = tmp_path_factory.mktemp("ledger") / "ledger.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.ledger", "--port", str(port), "--db", str(db)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, 15)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_pid(proc)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_reference_ledger_follows_the_contract(case: schemathesis.Case, ledger_url: str) -> None:
    # A relation JSON Schema cannot state, and docs/ledger-api.yaml says in words: a record's id
    # is its idempotency key. Apply it so generated records can be valid at all.
    # Only an id that can travel in an HTTP header at all: one with control or non-ASCII characters
    # is refused by the HTTP parser before the ledger sees it (a text/plain 400, not the contract's).
    rid = case.body.get("id") if isinstance(case.body, dict) else None
    if isinstance(rid, str) and rid.isascii() and rid.isprintable() and case.headers is not None:
        case.headers["Idempotency-Key"] = rid
    case.call_and_validate(base_url=ledger_url)

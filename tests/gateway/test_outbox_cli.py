"""`edge-gateway outbox list|retry` on a real outbox file (gateway.ledger.outbox.Outbox wrote it)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger.outbox import Outbox, SendResult, State
from gateway.ledger.outbox_cli import daemon_holds, outbox_list_main, outbox_path, outbox_retry_main
from tests.support.ledger import hazard, permit_event
from tests.support.procs import stop_pid, wait_for

ROOT = Path(__file__).resolve().parents[2]


def cli(main: Callable[[list[str], Any, Any], int], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def _sender(park: set[int]) -> Callable[[str, str, Mapping[str, Any]], Awaitable[SendResult]]:
    """Stands in for the ledger: parks the hazards whose evidence n is in `park`, accepts the rest."""

    async def send(stream: str, key: str, body: Mapping[str, Any]) -> SendResult:
        if stream == "hazards" and body["evidence"]["n"] in park:
            return SendResult.park(422, f"invalid_record: test #{body['evidence']['n']}")
        return SendResult.ok(201)

    return send


async def make_outbox(db: Path, *, park: set[int], pending: int = 0) -> None:
    """Hazards 0..4 delivered (those in `park` parked), a permit event sent, then `pending` left unsent."""
    async with Outbox(db) as ob:
        keys = [await ob.put("hazards", hazard(n)) for n in range(5)]
        await ob.put("permit-events", permit_event(0))
        task = asyncio.create_task(ob.run(_sender(park)))
        await wait_for(lambda: ob.depth() == 0, 5, what="delivered")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for n in range(pending):
            await ob.put("hazards", hazard(100 + n))
        assert len(keys) == 5


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "outbox.db"
    asyncio.run(make_outbox(path, park={1, 3}, pending=1))
    return path


def test_list_table_and_filters(db: Path) -> None:
    code, out, err = cli(outbox_list_main, "--db", str(db))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "stream", "seq", "state"]
    assert [ln.split()[3] for ln in lines[1:-2]] == ["sent", "parked", "sent", "parked", "sent", "sent", "pending"]
    assert "-- 7 shown; in the outbox: 1 pending, 4 sent, 2 parked" in out
    assert "invalid_record: test #1" in lines[2] and "outbox retry ID" in lines[-1]

    code, out, _ = cli(outbox_list_main, "--db", str(db), "--state", "parked", "--json")
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert code == 0 and [(r["stream"], r["seq"], r["state"]) for r in recs] == [
        ("hazards", 2, "parked"),
        ("hazards", 4, "parked"),
    ]
    assert recs[0]["body"]["evidence"] == {"n": 1, "o2": 18.9} and recs[0]["park_reason"].startswith("422")

    code, out, _ = cli(outbox_list_main, "--db", str(db), "--stream", "permit-events", "--json")
    assert code == 0 and [json.loads(ln)["body"]["event"] for ln in out.splitlines()] == ["ignition_dropped"]
    code, out, _ = cli(outbox_list_main, "--db", str(db), "--limit", "2", "--json")
    assert code == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--state", "lost"], 2, "invalid choice"),
        (["--limit", "0"], 2, "--limit"),
        (["--db", "x", "--config", "y"], 2, "not allowed with"),
        (["--db", "/nonexistent/outbox.db"], 1, "no outbox at /nonexistent/outbox.db"),
        (["--config", "/nonexistent/gw.toml"], 2, "not found"),
    ],
)
def test_list_usage_and_runtime_errors(argv: list[str], code: int, words: str) -> None:
    got, out, err = cli(outbox_list_main, *argv)
    assert (got, out) == (code, "") and words in err


def test_list_refuses_a_file_that_is_not_an_outbox(tmp_path: Path) -> None:
    bogus = tmp_path / "outbox.db"
    bogus.write_bytes(b"not a database at all" * 100)
    code, _, err = cli(outbox_list_main, "--db", str(bogus))
    assert code == 1 and "cannot" in err


def test_path_comes_from_the_config_state_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "gateway.toml"
    cfg.parent.mkdir()
    body = '[site]\nid = "plant-1"\ngateway_id = "gw-1"\n\n[[zones]]\nid = "z1"\nkind = "general"\n\n'
    cfg.write_text(body + '[state]\ndir = "../var"\n')
    assert outbox_path(cfg, None) == tmp_path / "etc" / ".." / "var" / "outbox.db"
    cfg.write_text(body + f'[state]\ndir = "{tmp_path / "abs"}"\n')
    assert outbox_path(cfg, None) == tmp_path / "abs" / "outbox.db"
    assert outbox_path(cfg, Path("/x/o.db")) == Path("/x/o.db")
    code, _, err = cli(outbox_list_main, "--config", str(cfg))
    assert code == 1 and f"no outbox at {tmp_path / 'abs' / 'outbox.db'}" in err


async def _records(db: Path) -> list[tuple[int, State]]:
    async with Outbox(db) as ob:
        return [(r.id, r.state) for r in await ob.list(stream="hazards")]


def test_retry_unparks_and_the_record_is_delivered_next(db: Path) -> None:
    code, out, err = cli(outbox_retry_main, "2", "--db", str(db))
    assert (code, err) == (0, "") and "record 2 is pending again" in out
    assert asyncio.run(_records(db)) == [
        (1, State.SENT),
        (2, State.PENDING),
        (3, State.SENT),
        (4, State.PARKED),
        (5, State.SENT),
        (7, State.PENDING),
    ]
    code, _, err = cli(outbox_retry_main, "2", "--db", str(db))  # no longer parked
    assert code == 2 and "no parked record with id 2" in err

    async def deliver() -> list[int]:
        sent: list[int] = []

        async def send(stream: str, key: str, body: Mapping[str, Any]) -> SendResult:
            sent.append(body["evidence"]["n"])
            return SendResult.ok(201)

        async with Outbox(db) as ob:
            assert (ob.depth(), ob.parked_count()) == (2, 1)  # a fresh open counts what the CLI changed
            task = asyncio.create_task(ob.run(send))
            await wait_for(lambda: ob.depth() == 0, 5, what="drained")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return sent

    assert asyncio.run(deliver()) == [1, 100]  # the un-parked record goes first, in its stream's order


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["abc"], 2, "is not a number"),
        (["0"], 2, "must be >= 1"),
        (["99"], 2, "no parked record with id 99"),
        (["1"], 2, "no parked record with id 1"),  # sent, not parked
        ([], 2, "required"),
    ],
)
def test_retry_bad_ids(db: Path, argv: list[str], code: int, words: str) -> None:
    got, out, err = cli(outbox_retry_main, *argv, "--db", str(db))
    assert (got, out) == (code, "") and words in err


def test_retry_does_not_create_an_outbox(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    code, _, err = cli(outbox_retry_main, "1", "--db", str(db))
    assert code == 1 and "no outbox at" in err and not db.exists()


_HOLDER = """
import asyncio, sys
from gateway.ledger.outbox import Outbox
async def main():
    async with Outbox(sys.argv[1]):
        print("open", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


def test_while_the_daemon_holds_the_outbox_list_works_and_retry_refuses(db: Path) -> None:
    """Another process owns the outbox (as the daemon does): reading is fine, changing is refused."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while "open" not in lines and len(lines) < 5:  # structlog's "outbox_opened" line comes first
            lines.append(proc.stdout.readline().strip())
        assert "open" in lines, lines
        assert daemon_holds(db)
        code, out, _ = cli(outbox_list_main, "--db", str(db), "--state", "parked", "--json")
        assert code == 0 and len(out.splitlines()) == 2
        code, out, err = cli(outbox_retry_main, "2", "--db", str(db))
        assert (code, out) == (1, "") and "in use by the running gateway" in err and "/api/outbox/retry" in err
    finally:
        stop_pid(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    assert not daemon_holds(db)
    assert asyncio.run(_records(db))[1] == (2, State.PARKED)  # the refused retry changed nothing
    assert cli(outbox_retry_main, "2", "--db", str(db))[0] == 0

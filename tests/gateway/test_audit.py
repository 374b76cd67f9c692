"""gateway.ledger.audit: the hash-chained JSON-lines audit log, its reopen/repair and its verifier."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ledger import canonical_json
from gateway.ledger import audit
from gateway.ledger.audit import (
    GENESIS,
    AuditCorruptError,
    AuditLockedError,
    AuditLog,
    AuditRecordError,
    Head,
    VerifyReason,
    audit_verify_main,
    entry_hash,
    iter_entries,
    verify,
)
from tests.support.clock import FakeClock

T0 = 1_714_550_400.0  # 2024-05-01T08:00:00Z


class TickingClock(FakeClock):
    # Special: +1 s per read, so each record the log stamps has its own, later time (2024-05-01T08:00:01Z first).
    def time(self) -> float:
        self.advance(1.0)
        return super().time()


def rec(i: int) -> dict[str, Any]:
    return {"kind": "test", "i": i, "text": f"line {i} 中文"}


def make(path: Path, n: int = 5) -> Head:
    with AuditLog(path, clock=TickingClock(utc=T0).time) as log:
        for i in range(n):
            log.append(rec(i))
        return log.head


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put(path: Path, ls: list[bytes]) -> None:
    path.write_bytes(b"".join(ls))


# --- append / reopen / verify --------------------------------------------------------


def test_line_format_and_chain(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 3)
    objs = [json.loads(x) for x in lines(p)]
    assert [o["seq"] for o in objs] == [0, 1, 2]
    assert objs[0]["utc"] == "2024-05-01T08:00:01.000000Z"
    assert objs[0]["prev"] == GENESIS
    for a, b in itertools.pairwise(objs):
        assert b["prev"] == a["hash"]
    for o, raw in zip(objs, lines(p), strict=True):
        assert o["hash"] == entry_hash(o["seq"], o["utc"], o["prev"], o["record"])
        assert raw == canonical_json(o) + b"\n"
    assert objs[2]["record"] == rec(2)


def test_append_reopen_verify(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    head = make(p, 5)
    assert head.seq == 4
    with AuditLog(p, clock=TickingClock(utc=T0).time) as log:
        assert log.head == head and log.recovered is None
        h = log.append({"kind": "decision", "inputs": [{"signal": "lel-1", "value": 3.5}], "decision": {"x": 1}})
        assert h.seq == 5
    r = verify(p)
    assert (r.ok, r.count, r.first_bad_line, r.reason, r.head) == (True, 6, None, VerifyReason.OK, h)
    entries = list(iter_entries(p))
    assert [e.seq for e in entries] == list(range(6))
    assert entries[-1].record == {
        "kind": "decision", "inputs": [{"signal": "lel-1", "value": 3.5}], "decision": {"x": 1}
    }


def test_empty_and_new_file(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    with AuditLog(p) as log:
        assert log.head == Head(-1, GENESIS)
    assert p.read_bytes() == b""
    assert verify(p).ok and verify(p).count == 0


def test_second_writer_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    with AuditLog(p):
        with pytest.raises(AuditLockedError, match="another process"):
            AuditLog(p)
    with AuditLog(p) as log:  # released on close
        pass
    with pytest.raises(audit.AuditWriteError, match="after close"):
        log.append(rec(0))


@pytest.mark.parametrize(
    "bad",
    [
        {"no": "kind"},
        {"kind": ""},
        {"kind": "x", "v": float("nan")},
        {"kind": "x", "v": object()},
        {"kind": "x", "s": "\ud800"},  # lone surrogate: not encodable as UTF-8
        ["kind", "x"],
        {"kind": "x", "big": "y" * audit.MAX_LINE_BYTES},
    ],
    ids=["no kind", "empty kind", "NaN", "object", "surrogate", "a list", "too big"],
)
def test_bad_records_write_nothing(tmp_path: Path, bad: Any) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 2)
    before = p.read_bytes()
    with AuditLog(p) as log:
        with pytest.raises(AuditRecordError):
            log.append(bad)
        assert log.head.seq == 1
        assert log.append(rec(9)).seq == 2  # the chain goes on
    assert p.read_bytes().startswith(before) and verify(p).ok


def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)  # a spy: the real fsync still runs
    p = tmp_path / "audit.jsonl"
    with AuditLog(p) as log:
        base = len(calls)  # the directory fsync of a new file
        for i in range(3):
            log.append(rec(i))
        assert len(calls) - base == 3  # default: every append
    calls.clear()
    with AuditLog(p, fsync_every=4) as log:
        for i in range(5):
            log.append(rec(i))
        assert len(calls) == 1  # after the 4th
        log.sync()
        assert len(calls) == 2
        log.sync()
        assert len(calls) == 2  # nothing pending
    with pytest.raises(ValueError):
        AuditLog(p, fsync_every=0)


# --- tampering -----------------------------------------------------------------------


def _edit_field(ls: list[bytes]) -> list[bytes]:
    ls[2] = ls[2].replace(b'"i":2', b'"i":7')
    return ls


def _edit_and_rehash(ls: list[bytes]) -> list[bytes]:
    o = json.loads(ls[2])
    o["record"]["i"] = 7
    o["hash"] = entry_hash(o["seq"], o["utc"], o["prev"], o["record"])
    ls[2] = canonical_json(o) + b"\n"
    return ls


def _reformat(ls: list[bytes]) -> list[bytes]:
    ls[2] = json.dumps(json.loads(ls[2]), ensure_ascii=False).encode() + b"\n"  # same meaning, spaces added
    return ls


def _insert_forged(ls: list[bytes]) -> list[bytes]:
    prev = json.loads(ls[1])
    o = {"seq": 2, "utc": prev["utc"], "prev": prev["hash"], "record": {"kind": "forged"}}
    o["hash"] = entry_hash(2, o["utc"], o["prev"], o["record"])
    return [*ls[:2], canonical_json(o) + b"\n", *ls[2:]]


TAMPER: list[tuple[str, Callable[[list[bytes]], list[bytes]], int, VerifyReason]] = [
    ("edit a field", _edit_field, 3, VerifyReason.BAD_HASH),
    ("edit a field and its hash", _edit_and_rehash, 4, VerifyReason.BAD_PREV),
    ("reformat a line", _reformat, 3, VerifyReason.NOT_CANONICAL),
    ("delete a middle line", lambda ls: ls[:2] + ls[3:], 3, VerifyReason.BAD_SEQ),
    ("delete the first line", lambda ls: ls[1:], 1, VerifyReason.BAD_SEQ),
    ("swap two lines", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, VerifyReason.BAD_SEQ),
    ("insert a copy", lambda ls: [*ls[:3], ls[1], *ls[3:]], 4, VerifyReason.BAD_SEQ),
    ("insert a forged line", _insert_forged, 4, VerifyReason.BAD_SEQ),
    ("truncate mid-line", lambda ls: [*ls[:4], ls[4][:30]], 5, VerifyReason.TORN_LINE),
    ("garbage line", lambda ls: [*ls[:1], b"hello\n", *ls[1:]], 2, VerifyReason.NOT_JSON),
    ("missing field", lambda ls: [ls[0], b'{"seq":1}\n', *ls[2:]], 2, VerifyReason.BAD_FIELDS),
    ("lone surrogate escape", lambda ls: [ls[0], ls[1].replace(b"line 1", b"\\ud800"), *ls[2:]], 2,
     VerifyReason.NOT_CANONICAL),
    ("blank line", lambda ls: [*ls[:3], b"\n", *ls[3:]], 4, VerifyReason.NOT_JSON),
]


@pytest.mark.parametrize(("case", "tamper", "line", "why"), TAMPER, ids=[t[0] for t in TAMPER])
def test_tampering_is_found_at_the_first_bad_line(
    tmp_path: Path, case: str, tamper: Callable[[list[bytes]], list[bytes]], line: int, why: VerifyReason
) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 5)
    assert verify(p).ok
    put(p, tamper(lines(p)))
    r = verify(p)
    assert (r.ok, r.first_bad_line, r.reason, r.count) == (False, line, why, line - 1), r.detail
    assert f"line {line}:" in r.detail
    out = io.StringIO()
    assert audit_verify_main(p, out) == 1
    assert "TAMPERED" in out.getvalue()
    with pytest.raises(AuditCorruptError):
        list(iter_entries(p))


def test_tail_deletion_needs_the_anchor(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    head = make(p, 5)
    put(p, lines(p)[:4])
    assert verify(p).ok  # a shorter chain is still a chain...
    r = verify(p, anchor=head)  # ...which the published head exposes
    assert (r.ok, r.reason, r.first_bad_line) == (False, VerifyReason.TRUNCATED, 5)


def test_rewritten_chain_fails_the_anchor(tmp_path: Path) -> None:
    p, q = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    head = make(p, 5)
    with AuditLog(q, clock=lambda: T0 + 99) as log:  # same records, other times: a consistent forgery
        for i in range(5):
            log.append(rec(i))
    assert verify(q).ok
    r = verify(q, anchor=head)
    assert (r.ok, r.reason, r.first_bad_line) == (False, VerifyReason.ANCHOR_MISMATCH, 5)
    assert verify(p, anchor=head).ok
    assert verify(p, anchor=Head(2, json.loads(lines(p)[2])["hash"])).ok


# --- power cut: torn last line ---------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 3], ids=["torn first line", "torn after 3 lines"])
def test_torn_tail_is_truncated_with_a_record(tmp_path: Path, keep: int) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, keep + 1)
    ls = lines(p)
    torn = ls[keep][:-20]
    put(p, [*ls[:keep], torn])
    assert verify(p).reason is VerifyReason.TORN_LINE
    with AuditLog(p, clock=TickingClock(utc=T0).time) as log:
        assert log.recovered is not None
        assert (log.recovered.offset, log.recovered.size) == (sum(map(len, ls[:keep])), len(torn))
        assert log.head.seq == keep
        log.append(rec(100))
    r = verify(p)
    assert r.ok and r.count == keep + 2
    entries = list(iter_entries(p))
    assert entries[keep].record["kind"] == "audit_recovery"
    assert entries[keep].record["truncated_bytes"] == len(torn)
    assert entries[keep].record["truncated_prefix"] == torn[:256].decode()
    assert entries[-1].record == rec(100)


def test_nul_filled_tail_is_torn(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 2)
    with open(p, "ab") as f:
        f.write(b"\x00" * 4096)  # what a crash with delayed allocation can leave
    with AuditLog(p) as log:
        assert log.recovered is not None and log.recovered.size == 4096
    assert verify(p).ok


def test_corrupt_last_complete_line_refuses_to_continue(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 3)
    put(p, _edit_field(lines(p)))
    with pytest.raises(AuditCorruptError, match="move the file aside"):
        AuditLog(p)
    assert verify(p).first_bad_line == 3


def test_failed_write_leaves_no_partial_line(tmp_path: Path) -> None:
    """A real short write: the file-size limit cuts the line; the log removes the piece."""
    p = tmp_path / "audit.jsonl"
    make(p, 2)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from gateway.ledger.audit import AuditLog, AuditWriteError
        log = AuditLog({str(p)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        size = {p.stat().st_size}
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
        try:
            log.append({{"kind": "big", "pad": "x" * 1000}})
        except AuditWriteError as exc:
            print("RESULT refused", exc.path)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("RESULT", log.append({{"kind": "small"}}).seq)
        log.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    results = [ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith("RESULT")]  # structlog prints too
    assert results == [["refused", str(p)], ["2"]], out.stdout + out.stderr
    r = verify(p)
    assert r.ok and r.count == 3


# --- CLI -------------------------------------------------------------------------------


def test_audit_verify_main_exit_codes(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    make(p, 3)
    out = io.StringIO()
    assert audit_verify_main(p, out) == 0
    assert out.getvalue().startswith(f"OK: {p}: 3 records")
    out = io.StringIO()
    assert audit_verify_main(tmp_path / "missing.jsonl", out) == 2
    assert "UNREADABLE" in out.getvalue()
    assert audit_verify_main(tmp_path, io.StringIO()) == 2  # a directory

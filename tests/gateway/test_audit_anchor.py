"""A truncated audit chain is caught with an anchor (issue 18.2): `head -n` of a chain verifies on
its own, but not against an anchor published before the cut."""

from __future__ import annotations

import io
from pathlib import Path

from gateway.ledger.anchors import AnchorPublisher
from gateway.ledger.audit import AuditLog, audit_verify_main


def chain(path: Path, n: int) -> list[str]:
    """Write n records; return the anchors (SEQ:HASH) after each."""
    heads = []
    with AuditLog(path) as log:
        for i in range(n):
            h = log.append({"kind": "test", "n": i})
            heads.append(f"{h.seq}:{h.hash}")
    return heads


def run(path: Path, anchor: str | None = None) -> tuple[int, str]:
    out = io.StringIO()
    return audit_verify_main(path, out, anchor), out.getvalue()


def test_a_tail_cut_below_the_anchor_is_truncation_with_the_missing_range(tmp_path: Path) -> None:
    full = tmp_path / "audit.jsonl"
    heads = chain(full, 200)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(full.read_text().splitlines(keepends=True)[:150]))

    assert run(cut)[0] == 0  # on its own, a cut file is indistinguishable from a short one
    code, text = run(cut, heads[179])
    assert code == 1 and text.startswith("TRUNCATED:"), text
    assert "records 150..179 are missing" in text and "150 good records" in text

    code, text = run(full, heads[179])
    assert code == 0 and "anchor seq=179 present unchanged, 20 after it" in text, text


def test_an_anchor_that_does_not_match_the_chain_is_tampering(tmp_path: Path) -> None:
    full = tmp_path / "audit.jsonl"
    heads = chain(full, 10)
    seq, _ = heads[5].split(":")
    code, text = run(full, f"{seq}:{'0' * 64}")
    assert code == 1 and "TAMPERED" in text and "anchor_mismatch" in text, text


def test_a_malformed_anchor_is_a_usage_error(tmp_path: Path) -> None:
    full = tmp_path / "audit.jsonl"
    chain(full, 3)
    assert run(full, "12:abc")[0] == 2
    assert run(full, "x:" + "0" * 64)[0] == 2


def test_the_publisher_sends_the_head_and_skips_an_unchanged_interval(tmp_path: Path) -> None:
    sent: list[dict[str, object]] = []
    with AuditLog(tmp_path / "audit.jsonl") as log:
        pub = AnchorPublisher(lambda: log.head, sent.append, lambda: "2026-12-05T00:00:00Z", 300)
        log.append({"kind": "a"})
        pub.publish("start")
        pub.publish("interval")  # nothing appended since: no new anchor
        log.append({"kind": "b"})
        pub.publish("interval")
    assert [(a["seq"], a["reason"]) for a in sent] == [(0, "start"), (1, "interval")]
    assert all(len(str(a["hash"])) == 64 for a in sent)


def test_how_the_previous_run_ended_comes_from_the_last_record(tmp_path: Path) -> None:
    from gateway.app.daemon import previous_stop

    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        assert log.last_kind is None and previous_stop(log.last_kind) == "none"
        log.append({"kind": "alarm", "signal": "t101_o2"})  # the process dies here (kill -9)
    with AuditLog(path) as log:
        assert previous_stop(log.last_kind) == "unclean"
        log.append({"kind": "gateway_stopped", "code": 0})
    with AuditLog(path) as log:
        assert previous_stop(log.last_kind) == "clean"

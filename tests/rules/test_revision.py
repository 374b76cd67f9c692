"""Signed, monotonic permit revisions (rules/revision.py): tables and properties, no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.permit import GasTest, Permit, PermitState, PermitType, StateChange
from rules.revision import Refused, RevisionMark, RevisionRefusal, admit

S = PermitState
T0 = 1_750_000_000.0


def permit(rev: int, state: PermitState = S.ACTIVE, gas_at: float | None = T0, **kw: object) -> Permit:
    tests = () if gas_at is None else (GasTest(gas_at, "gt", 20.9, 0.0, 0.0, 0.0, "GX", None, None),)
    return replace(Permit("HW-7", PermitType.HOT_WORK, "second", "s", "z", T0 - 600, T0 + 8 * 3600, state,
                          gas_tests=tests), revision=rev, **kw)  # fmt: skip


def mark(rev: int, state: PermitState = S.ACTIVE, digest: str = "d", suspended: float | None = None) -> RevisionMark:
    return RevisionMark(rev, digest, state, suspended)


@pytest.mark.parametrize(
    ("held", "new", "digest", "expected"),
    [
        (None, permit(1), "a", mark(1, digest="a")),
        (mark(1, digest="a"), permit(2), "b", mark(2, digest="b")),
        (mark(2, digest="b"), permit(2), "b", mark(2, digest="b")),  # a re-delivery: unchanged
        (mark(2, digest="b"), permit(1), "a", RevisionRefusal.OLDER),
        (mark(2, digest="b"), permit(2), "x", RevisionRefusal.CONFLICT),
        (mark(3, S.CLOSED), permit(4, S.ACTIVE), "c", RevisionRefusal.FINAL),
        (mark(3, S.CANCELLED), permit(4, S.SUSPENDED), "c", RevisionRefusal.FINAL),
        (mark(3, S.EXPIRED), permit(4, S.ACTIVE), "c", RevisionRefusal.FINAL),
        (mark(3, S.CLOSED), permit(4, S.CANCELLED), "c", mark(4, S.CANCELLED, "c")),  # final to final: heard
        # Resuming a suspension needs a gas test taken after it.
        (mark(2, S.SUSPENDED, suspended=T0 + 100), permit(3, gas_at=T0), "c", RevisionRefusal.RESUME_WITHOUT_GAS_TEST),
        (mark(2, S.SUSPENDED, suspended=T0 + 100), permit(3, gas_at=T0 + 100), "c",
         RevisionRefusal.RESUME_WITHOUT_GAS_TEST),
        (mark(2, S.SUSPENDED, suspended=T0 + 100), permit(3, gas_at=None), "c",
         RevisionRefusal.RESUME_WITHOUT_GAS_TEST),
        (mark(2, S.SUSPENDED, suspended=T0 + 100), permit(3, gas_at=T0 + 101), "c", mark(3, digest="c")),
        (mark(2, S.SUSPENDED, suspended=T0 + 100), permit(3, S.CLOSED), "c", mark(3, S.CLOSED, "c")),
    ],
)
def test_admit(held: RevisionMark | None, new: Permit, digest: str, expected: object) -> None:
    got = admit(held, new, digest, T0 + 200)
    if isinstance(expected, RevisionRefusal):
        assert isinstance(got, Refused) and got.reason is expected and "HW-7" in got.detail
    else:
        assert got == expected


def test_suspension_time_from_the_ledgers_history_or_first_seen() -> None:
    history = (StateChange(S.ACTIVE, S.SUSPENDED, T0 + 50, "LEL alarm"),)
    assert admit(mark(1), permit(2, S.SUSPENDED, history=history), "b", T0 + 200) == mark(2, S.SUSPENDED, "b", T0 + 50)
    first = admit(mark(1), permit(2, S.SUSPENDED), "b", T0 + 200)
    assert first == mark(2, S.SUSPENDED, "b", T0 + 200)
    # Still suspended in a later revision without history: the suspension began when first held.
    assert admit(first, permit(3, S.SUSPENDED), "c", T0 + 900) == mark(3, S.SUSPENDED, "c", T0 + 200)


def test_the_acceptance_runs_rollback_is_refused() -> None:
    """v1 ACTIVE, signed v2 SUSPENDED, the genuine v1 posted again: refused."""
    v1, v2 = permit(1), permit(2, S.SUSPENDED)
    m = admit(None, v1, "v1", T0)
    assert isinstance(m, RevisionMark)
    m = admit(m, v2, "v2", T0 + 60)
    assert isinstance(m, RevisionMark) and m.state is S.SUSPENDED
    again = admit(m, v1, "v1", T0 + 120)
    assert isinstance(again, Refused) and again.reason is RevisionRefusal.OLDER


_STATES = st.sampled_from(list(PermitState))
_SUBMISSION = st.tuples(st.integers(1, 6), _STATES, st.sampled_from(["a", "b"]), st.floats(T0 - 100, T0 + 1000))


@settings(max_examples=400, deadline=None)
@given(subs=st.lists(_SUBMISSION, max_size=12))
def test_properties_over_any_sequence_of_submissions(subs: list[tuple[int, PermitState, str, float]]) -> None:
    """Revisions never go down; a digest is never replaced at the same revision; nothing leaves a
    final state for a non-final one; a suspension is resumed only with a gas test after it."""
    held: RevisionMark | None = None
    now = T0 + 2000.0
    for rev, state, digest, gas_at in subs:
        now += 10
        got = admit(held, permit(rev, state, gas_at=gas_at), f"{rev}{digest}", now)
        if isinstance(got, Refused):
            continue
        if held is not None:
            assert got.revision >= held.revision
            if got.revision == held.revision:
                assert got == held
            if held.state in {S.CLOSED, S.CANCELLED, S.EXPIRED}:
                assert got.state in {S.CLOSED, S.CANCELLED, S.EXPIRED}
            if held.state is S.SUSPENDED and got.state is S.ACTIVE and got.revision > held.revision:
                assert held.suspended_utc is not None and gas_at > held.suspended_utc
        held = got

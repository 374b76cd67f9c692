"""Which version of a permit the gateway may act on: signed, monotonic revisions.

A genuine, correctly signed permit can still be the wrong one: an old revision posted again
after the ledger suspended the permit would roll the suspension back. So every permit carries
a `revision` (inside its signature) that the ledger raises on every change, and the gateway
keeps, per permit id, the highest revision it has accepted (`RevisionMark`, persisted by the
shell). `admit` decides, purely:

- a lower revision than the mark: refused (`older`);
- the same revision with other content: refused (`conflict`); the same content: accepted
  again, unchanged (a re-delivery, the offline cache at start);
- after CLOSED, CANCELLED or EXPIRED, any non-final state: refused (`final`);
- SUSPENDED -> ACTIVE only with a gas test taken after the suspension (`resume_without_gas_test`).
  The suspension time is the ledger's own history entry, or, when the suspended revision
  carries none, the time the gateway first held it suspended.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rules.permit import TERMINAL, Permit, PermitState, last_gas_test, last_suspension_utc


class RevisionRefusal(StrEnum):
    OLDER = "revision_older"
    CONFLICT = "revision_conflict"
    FINAL = "revision_after_final"
    RESUME_WITHOUT_GAS_TEST = "resume_without_gas_test"


@dataclass(frozen=True, slots=True)
class RevisionMark:
    """The highest revision of one permit accepted so far."""

    revision: int
    digest: str
    """Identity of that revision's content (the shell hashes the canonical signed body)."""
    state: PermitState
    suspended_utc: float | None = None
    """While `state` is SUSPENDED: when the suspension began (epoch seconds UTC)."""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: RevisionRefusal
    detail: str
    """Names the permit, both revisions and the fix."""


def admit(mark: RevisionMark | None, permit: Permit, digest: str, now_utc: float) -> RevisionMark | Refused:
    """The new mark if `permit` (with content `digest`) may replace what `mark` records, else why not."""
    pid, rev = permit.permit_id, permit.revision
    if mark is not None:
        if rev < mark.revision:
            return Refused(RevisionRefusal.OLDER, f"permit {pid}: revision {rev} is older than revision "
                           f"{mark.revision} already accepted ({mark.state.value}); the ledger must issue a newer one")
        if rev == mark.revision:
            if digest == mark.digest:
                return mark
            return Refused(RevisionRefusal.CONFLICT, f"permit {pid}: revision {rev} was already accepted with other "
                           "content; every change needs a higher revision")
        if mark.state in TERMINAL and permit.state not in TERMINAL:
            return Refused(RevisionRefusal.FINAL, f"permit {pid} is {mark.state.value} (revision {mark.revision}), "
                           f"which is final; revision {rev} cannot make it {permit.state.value}: issue a new permit")
        if mark.state is PermitState.SUSPENDED and permit.state is PermitState.ACTIVE:
            since = mark.suspended_utc if mark.suspended_utc is not None else now_utc
            test = last_gas_test(permit)
            if test is None or not test.at_utc > since:
                return Refused(RevisionRefusal.RESUME_WITHOUT_GAS_TEST, f"permit {pid}: revision {rev} resumes a "
                               f"suspended permit without a gas test taken after the suspension (at {since:.0f}); "
                               "record a fresh gas test in the ledger")
    return RevisionMark(rev, digest, permit.state, _suspended_since(mark, permit, now_utc))


def _suspended_since(mark: RevisionMark | None, permit: Permit, now_utc: float) -> float | None:
    if permit.state is not PermitState.SUSPENDED:
        return None
    recorded = last_suspension_utc(permit)
    if recorded is not None:
        return recorded
    if mark is not None and mark.state is PermitState.SUSPENDED and mark.suspended_utc is not None:
        return mark.suspended_utc  # still suspended: the suspension began then, not now
    return now_utc


__all__ = ["Refused", "RevisionMark", "RevisionRefusal", "admit"]

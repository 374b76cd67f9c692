"""Permit documents as the simulated plant's ledger issues them: the gateway's wire format
(docs/ledger-api.yaml's Permit, parsed by drivers/ledger/permit_codec.py).

One builder for the tests and the bench: `permit_doc(...)` is the document, `person`,
`gas_test`, `approval` and `competency` are its list items. Times are epoch seconds and are
written as integers. The document carries `"canon": "jcs"` (it is to be signed over its RFC
8785 canonical JSON) but no signature: sign it with `drivers.ledger.permit_codec.sign_permit`,
or hand it to `firmware_sim.ledger.ReferenceLedger` (`add_permit` numbers the revision of a
document that has none and signs it).

    permit_doc("HW-7", "bay-2", site_id="demo-plant", valid_from=now - 600, valid_to=now + 3600,
               people=[person("E10", "operator"), person("E20", "fire_watch"), person("E99", "issuer")],
               gas_tests=[gas_test(now - 300, "E99", bump_at=now - 3600, cal_due=now + 30 * 86400)],
               approvals=[approval("E99", now - 900)],
               competencies=[competency("E10", "HW-C-1", now + 86400)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FIELD_ORDER = (
    "permit_id", "revision", "canon", "type", "grade", "site_id", "zone_id", "state", "valid_from", "valid_to",
    "people", "gas_tests", "isolations", "approvals", "linked_permits", "history", "max_entrants", "competencies",
)  # fmt: skip
"""The wire format's fields in the order the ledger writes them; other fields follow."""


def person(pid: str, role: str, name: str | None = None) -> dict[str, Any]:
    """One person on the permit: `role` is operator, fire_watch, entrant, attendant, issuer, ..."""
    p: dict[str, Any] = {"id": pid, "role": role}
    if name is not None:
        p["name"] = name
    return p


def gas_test(
    at: float,
    tester: str,
    *,
    bump_at: float,
    cal_due: float,
    o2: float = 20.9,
    lel: float = 0,
    h2s: float = 0,
    co: float = 0,
    instrument: str = "GX-1",
) -> dict[str, Any]:
    """A gas test taken at `at` by `tester` with an instrument bump-tested at `bump_at` and due
    for calibration at `cal_due`; clean air unless told otherwise."""
    return {
        "at": int(at),
        "tester": tester,
        "o2": o2,
        "lel": lel,
        "h2s": h2s,
        "co": co,
        "instrument": instrument,
        "bump_at": int(bump_at),
        "cal_due": int(cal_due),
    }


def approval(signer: str, at: float, *, role: str = "issuer", signature: str = "x") -> dict[str, Any]:
    return {"signer": signer, "role": role, "at": int(at), "signature": signature}


def competency(person_id: str, certificate_id: str, expires: float, *, kind: str = "hot_work") -> dict[str, Any]:
    return {"person": person_id, "certificate_id": certificate_id, "kind": kind, "expires": int(expires)}


def permit_doc(
    permit_id: str,
    zone_id: str,
    *,
    site_id: str,
    valid_from: float,
    valid_to: float,
    people: Iterable[Mapping[str, Any]],
    kind: str = "hot_work",
    grade: str = "second",
    state: str = "active",
    revision: int | None = 1,
    canon: str | None = "jcs",
    gas_tests: Iterable[Mapping[str, Any]] = (),
    approvals: Iterable[Mapping[str, Any]] = (),
    competencies: Iterable[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A permit document. `revision=None` leaves the revision out (the reference ledger numbers
    it); `canon=None` leaves out the signed form's name, as a ledger of the pre-RFC 8785 form
    did (for tests of its refusal); `extra` adds other fields as given (isolations, history,
    max_entrants, ...)."""
    doc: dict[str, Any] = {
        "permit_id": permit_id,
        "type": kind,
        "grade": grade,
        "site_id": site_id,
        "zone_id": zone_id,
        "state": state,
        "valid_from": int(valid_from),
        "valid_to": int(valid_to),
        "people": [dict(p) for p in people],
        "gas_tests": [dict(g) for g in gas_tests],
        "approvals": [dict(a) for a in approvals],
        "competencies": [dict(c) for c in competencies],
        **extra,
    }
    if revision is not None:
        doc["revision"] = revision
    if canon is not None:
        doc["canon"] = canon
    return {k: doc[k] for k in FIELD_ORDER if k in doc} | {k: v for k, v in doc.items() if k not in FIELD_ORDER}

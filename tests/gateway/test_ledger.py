"""The ledger client against the reference ledger, and the reference ledger against its contract.

Contract check: every response of the reference ledger exercised here is validated with
jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1) against the response schema that
docs/ledger-api.yaml gives for that path, method and status; an undocumented status fails.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from drivers.ledger.permit_codec import (
    MAX_SAFE_INTEGER,
    PermitRejection,
    RejectReason,
    canonical_json,
    jcs,
    permit_from_body,
    signing_bytes,
    verify_permit,
)
from firmware_sim.ledger import ReferenceLedger, validate_permit, validate_record
from firmware_sim.ledger import canonical_json as ledger_canonical_json
from gateway.ledger.client import LedgerClient, LedgerError
from gateway.ledger.outbox import SendKind
from rules.config import ZoneKind
from rules.permit import Permit
from tests.support.ledger import full_record, permit_doc, running_ledger
from tests.support.procs import free_port, stop_pid, wait_port

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "ledger-api.yaml").read_text())
_URN = "urn:ledger-api"
_REGISTRY = Registry().with_resource(_URN, Resource.from_contents(DOC, default_specification=DRAFT202012))


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def schema_ok(name: str, instance: Any) -> bool:
    ref = {"$ref": _URN + _pointer("components", "schemas", name)}
    return jsonschema.Draft202012Validator(ref, registry=_REGISTRY).is_valid(instance)


def check_contract(method: str, path: str, status: int, body: Any) -> None:
    """The status is documented for this operation and the body matches its schema."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not in docs/ledger-api.yaml"
    where = ("paths", path, method.lower(), "responses", str(status))
    if "$ref" in responses[str(status)]:
        where = ("components", "responses", responses[str(status)]["$ref"].rsplit("/", 1)[1])
    ref = {"$ref": _URN + _pointer(*where, "content", "application/json", "schema")}
    jsonschema.Draft202012Validator(ref, registry=_REGISTRY, format_checker=jsonschema.FormatChecker()).validate(body)


@pytest.fixture
async def ledger() -> AsyncIterator[ReferenceLedger]:
    async with running_ledger() as led:
        yield led


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def call(
    http: aiohttp.ClientSession, led: ReferenceLedger, method: str, path: str, doc_path: str, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, led.url + path, **kw) as resp:
        body = await resp.json()
        check_contract(method, doc_path, resp.status, body)
        return resp.status, body


ENDPOINTS = [("hazards", "/v1/hazards"), ("permit-events", "/v1/permit-events")]


def test_the_document_is_valid_openapi_and_its_examples_match_their_schemas() -> None:
    validate_openapi(DOC)
    for path, name in (("/v1/hazards", "Hazard"), ("/v1/permit-events", "PermitEvent")):
        for ex in DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"].values():
            assert schema_ok(name, ex["value"])
            assert validate_record(path.removeprefix("/v1/"), ex["value"]) == []


@pytest.mark.parametrize(("stream", "path"), ENDPOINTS)
async def test_post_created_duplicate_conflict(
    ledger: ReferenceLedger, http: aiohttp.ClientSession, stream: str, path: str
) -> None:
    rec = full_record(stream)
    hdr = {"Idempotency-Key": rec["id"]}
    status, created = await call(http, ledger, "POST", path, path, json=rec, headers=hdr)
    assert status == 201 and created == rec | {"received_utc": created["received_utc"]}
    reordered = dict(reversed(list(rec.items())))  # same canonical JSON, other key order
    status, dup = await call(http, ledger, "POST", path, path, json=reordered, headers=hdr)
    assert (status, dup) == (200, created)
    status, err = await call(http, ledger, "POST", path, path, json=rec | {"utc": "2020-01-01T00:00:00Z"}, headers=hdr)
    assert status == 409 and err["error"] == "key_conflict"
    assert ledger.records(stream) == [rec]


@pytest.mark.parametrize(("stream", "path"), ENDPOINTS)
async def test_malformed_and_invalid_posts(
    ledger: ReferenceLedger, http: aiohttp.ClientSession, stream: str, path: str
) -> None:
    rec = full_record(stream)
    hdr = {"Idempotency-Key": rec["id"]}
    assert (await call(http, ledger, "POST", path, path, json=rec))[0] == 400  # no key
    assert (await call(http, ledger, "POST", path, path, json=rec, headers={"Idempotency-Key": "7"}))[0] == 400
    assert (await call(http, ledger, "POST", path, path, data=b"{not json", headers=hdr))[0] == 400
    bad = [
        {k: v for k, v in rec.items() if k != "site"},
        rec | {"seq": -1},
        rec | {"utc": "2025-03-01T08:00:00"},  # no offset
        rec | {"id": str(uuid.uuid4())},  # id != Idempotency-Key
        rec | ({"category": "weather"} if stream == "hazards" else {"event": "started"}),
    ]
    for body in bad:
        status, err = await call(http, ledger, "POST", path, path, json=body, headers=hdr)
        assert status == 422 and err["error"] == "invalid_record", body
    assert ledger.records(stream) == []


async def test_bearer_token_is_enforced(http: aiohttp.ClientSession) -> None:
    async with running_ledger(token="s3cret") as led:
        rec = full_record("hazards")
        status, _ = await call(
            http, led, "POST", "/v1/hazards", "/v1/hazards", json=rec, headers={"Idempotency-Key": rec["id"]}
        )
        assert status == 401
        async with LedgerClient(led.url, token="wrong") as c:
            assert (await c.post_hazard(rec["id"], rec)).status == 401
        async with LedgerClient(led.url, token="s3cret") as c:
            assert (await c.post_hazard(rec["id"], rec)).kind is SendKind.OK
        assert led.records("hazards") == [rec]


T0 = 1_740_816_000  # 2025-03-01T08:00:00Z
ZONES = {"tank-7": ZoneKind.CONFINED_SPACE, "bay-1": ZoneKind.HOT_WORK}


async def test_permits_are_served_in_the_gateway_format_and_verify(
    ledger: ReferenceLedger, http: aiohttp.ClientSession
) -> None:
    hw = permit_doc("HW-1", "bay-1", valid_from=T0, valid_to=T0 + 8 * 3600)
    cs = permit_doc("CS-2", "tank-7", valid_from=T0, valid_to=T0 + 8 * 3600, kind="confined_space",
                    valid_to_iso_note="ISO times verify too", gas_tests=[
                        {"at": "2025-03-01T08:00:00Z", "tester": "gt-1", "o2": 20.9, "lel": 0.5, "h2s": 0.0,
                         "co": 2, "instrument": "GX-1"}])
    assert ledger.add_permit(hw | {"signature": "stale"})["signature"] != "stale"
    ledger.add_permit(cs)
    status, doc = await call(http, ledger, "GET", "/v1/permits?site=plant-1", "/v1/permits")
    assert status == 200 and [p["permit_id"] for p in doc["permits"]] == ["CS-2", "HW-1"]
    assert all(schema_ok("SignedPermit", p) for p in doc["permits"])
    assert (await call(http, ledger, "GET", "/v1/permits", "/v1/permits"))[0] == 400  # site is required
    pub = Ed25519PublicKey.from_public_bytes(ledger.public_key)
    async with LedgerClient(ledger.url) as c:
        (signed,) = await c.get_permits("plant-1", "bay-1")
        assert {k: v for k, v in signed.items() if k != "signature"} == hw | {"revision": 1}  # the ledger's first
        permit = verify_permit(signed, pub, "plant-1", ZONES, T0 + 60)  # the gateway's own verifier
        assert isinstance(permit, Permit) and permit == permit_from_body(hw | {"revision": 1})
        assert permit.people[-1].id == "is-1" and permit.gas_tests[0].o2_pct == 20.9
        (signed_cs,) = await c.get_permits("plant-1", "tank-7")
        assert isinstance(verify_permit(signed_cs, pub, "plant-1", ZONES, T0 + 60), Permit)
        tampered = signed | {"valid_to": T0 + 9 * 3600}
        bad = verify_permit(tampered, pub, "plant-1", ZONES, T0 + 60)
        assert isinstance(bad, PermitRejection) and bad.reason is RejectReason.BAD_SIGNATURE
        assert await c.get_permits("plant-9") == []
    assert ledger.remove_permit("HW-1") and not ledger.remove_permit("HW-1")


async def test_a_permit_off_the_schema_is_refused(ledger: ReferenceLedger, http: aiohttp.ClientSession) -> None:
    old_style = {"permit_id": "HW-1", "type": "hot_work", "site": "plant-1", "zone_id": "bay-1", "state": "active",
                 "valid_from": "2025-03-01T08:00:00Z", "valid_to": "2025-03-01T16:00:00Z",
                 "people": [{"person_id": "p-1", "role": "operator"}]}
    with pytest.raises(ValueError, match=r"site_id: required.*people\[0\]\.id: required"):
        ledger.add_permit(old_style)
    async with http.post(ledger.url + "/dev/permits", json=old_style) as resp:
        assert resp.status == 422 and "site_id" in (await resp.json())["detail"]
    assert not schema_ok("Permit", old_style)


_PERMIT = permit_doc("HW-1", "bay-1", valid_from=T0, valid_to=T0 + 3600) | {"revision": 1}
_PERMIT_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=4), st.sampled_from(
        ["hot_work", "active", "operator", "2025-03-01T08:00:00Z", "2025-03-01 08:00", ""]
    ), st.just({}), st.just([]), st.just(["CS-1"]), st.just([7]),
    st.just([{"id": "p", "role": "issuer"}]), st.just([{"id": "p", "role": "boss"}]),
    st.just([{"at": T0, "tester": "t", "o2": 20.9, "lel": 0, "instrument": "i"}]),
    st.just([{"at": T0, "tester": "t", "o2": "20.9", "lel": 0, "instrument": "i"}]),
    st.just([{"from": "approved", "to": "active", "at": "2025-03-01T08:00:00Z"}]),
    st.just([{"signer": "s", "role": "issuer", "at": T0}]), st.just(["LOTO-1", {"tag": "L2"}]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(sorted(_PERMIT)), st.one_of(_PERMIT_VALUES, st.just("<drop>")),
                               max_size=3))
def test_reference_permit_validator_agrees_with_the_document_and_the_gateway(changes: dict[str, Any]) -> None:
    body = copy.deepcopy(_PERMIT)
    for k, v in changes.items():
        if v == "<drop>":
            body.pop(k, None)
        else:
            body[k] = v
    ok = validate_permit(body) == []
    assert ok == schema_ok("Permit", body), json.dumps(body)
    if ok:  # what the ledger accepts, the gateway can parse
        permit_from_body(body)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(extra=st.dictionaries(st.text(max_size=6), _JSON, max_size=4))
def test_both_canonical_forms_agree_so_signatures_verify(extra: dict[str, Any]) -> None:
    """The ledger's RFC 8785 form is written independently: it must give the gateway's bytes (rfc8785's)."""
    body = {**extra, **_PERMIT}
    assert ledger_canonical_json(body) == jcs(body) == signing_bytes(body | {"signature": "x"})


def _without_canon(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "canon"}


def test_the_ledger_signs_rfc_8785_and_says_so(ledger: ReferenceLedger) -> None:
    pub = Ed25519PublicKey.from_public_bytes(ledger.public_key)
    floats = _without_canon(permit_doc("HW-3", "bay-1", valid_from=T0, valid_to=T0 + 3600,
                                       note=[1e-7, 1700000000.0, -0.0]))
    signed = ledger.add_permit(floats)  # a body without canon gets "jcs": the form the ledger signs
    assert signed["canon"] == "jcs"
    assert b'"note":[1e-7,1700000000,0]' in signing_bytes(signed)
    assert canonical_json(signed) != jcs(signed)  # the old form differs here: it must not be what was signed
    assert isinstance(verify_permit(signed, pub, "plant-1", ZONES, T0 + 60), Permit)
    with pytest.raises(ValueError, match=r"canon: invalid value 'c14n'"):
        ledger.add_permit(floats | {"canon": "c14n"})
    with pytest.raises(ValueError, match=r"no RFC 8785 form"):
        ledger.add_permit(floats | {"note": 2**53})


async def test_a_ledger_still_signing_the_old_form_is_refused_with_why(ledger: ReferenceLedger) -> None:
    key = Ed25519PrivateKey.generate()
    old = _without_canon(permit_doc("HW-4", "bay-1", valid_from=T0, valid_to=T0 + 3600)) | {"revision": 1}
    ledger.store_signed_permit(old | {"signature": base64.b64encode(key.sign(canonical_json(old))).decode()})
    async with LedgerClient(ledger.url) as c:
        (served,) = await c.get_permits("plant-1", "bay-1")
    assert not schema_ok("SignedPermit", served)  # off the contract: canon is required
    got = verify_permit(served, key.public_key(), "plant-1", ZONES, T0 + 60)
    assert isinstance(got, PermitRejection) and got.reason is RejectReason.OLD_CANON
    assert "pre-RFC 8785" in got.detail and "canon = 'jcs'" in got.detail and "docs/ledger-api.yaml" in got.detail


async def test_competencies(ledger: ReferenceLedger, http: aiohttp.ClientSession) -> None:
    comp = [{"code": "hot_work_operator", "name": "Hot work", "issuer": "SAWS", "valid_to": "2026-01-01T00:00:00Z"}]
    ledger.set_competencies("p-1", comp)
    path = "/v1/people/{id}/competencies"
    status, doc = await call(http, ledger, "GET", "/v1/people/p-1/competencies", path)
    assert status == 200 and doc["competencies"] == comp
    assert (await call(http, ledger, "GET", "/v1/people/nobody/competencies", path))[0] == 404
    async with LedgerClient(ledger.url) as c:
        assert (await c.get_competencies("p-1"))["competencies"] == comp
        with pytest.raises(LedgerError) as info:
            await c.get_competencies("nobody")
        assert info.value.status == 404


async def test_client_maps_faults_to_retry_or_park(ledger: ReferenceLedger) -> None:
    async with LedgerClient(ledger.url, timeout=0.3) as c:
        rec = full_record("hazards")
        ledger.fail_next(1, status=500)
        r = await c.send("hazards", rec["id"], rec)
        assert (r.kind, r.status) == (SendKind.RETRY, 500)
        ledger.fail_next(1, status=429, retry_after_s=2)
        r = await c.send("hazards", rec["id"], rec)
        assert (r.kind, r.status, r.retry_after_s) == (SendKind.RETRY, 429, 2.0)
        ledger.reject_next(1, status=403)
        r = await c.send("hazards", rec["id"], rec)
        assert (r.kind, r.status) == (SendKind.PARK, 403)
        ledger.hang_next(1, seconds=2.0, after_store=False)
        r = await c.send("hazards", rec["id"], rec)
        assert r.kind is SendKind.RETRY and "timeout" in r.reason
        assert ledger.records("hazards") == []
        r = await c.send("hazards", rec["id"], rec | {"seq": "x"})
        assert (r.kind, r.status) == (SendKind.PARK, 422)
        assert (await c.send("alarms", rec["id"], rec)).kind is SendKind.PARK
        assert (await c.send("hazards", rec["id"], rec)).kind is SendKind.OK
        assert (await c.post_hazard(rec["id"], rec)).status == 200
        await ledger.stop()
        r = await c.post_permit_event(rec["id"], rec)
        assert r.kind is SendKind.RETRY and "Connect" in r.reason
        with pytest.raises(LedgerError):
            await c.get_permits("plant-1")


async def test_a_2xx_that_is_not_a_ledger_reply_is_retried() -> None:
    async def portal(_: web.Request) -> web.Response:
        return web.Response(text="<html>Please log in</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/hazards", portal)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with LedgerClient(f"http://127.0.0.1:{runner.addresses[0][1]}") as c:
            rec = full_record("hazards")
            r = await c.post_hazard(rec["id"], rec)
            assert (r.kind, r.status) == (SendKind.RETRY, 200)
    finally:
        await runner.cleanup()


_VALID = {s: full_record(s) for s in ("hazards", "permit-events")}
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.text(max_size=5),
    st.sampled_from(
        ["gas", "major", "closed", "2025-03-01T08:00:00Z", "2025-03-01 08:00", str(uuid.uuid4()), "general"]
    ),
    st.just({}),
    st.just([]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.sampled_from(["hazards", "permit-events"]),
    changes=st.dictionaries(
        st.sampled_from(sorted(set(_VALID["hazards"]) | set(_VALID["permit-events"]))),
        st.one_of(_VALUES, st.just("<drop>")),
        max_size=3,
    ),
)
def test_reference_validator_agrees_with_the_document(stream: str, changes: dict[str, Any]) -> None:
    body = copy.deepcopy(_VALID[stream])
    for k, v in changes.items():
        if v == "<drop>":
            body.pop(k, None)
        else:
            body[k] = v
    name = "Hazard" if stream == "hazards" else "PermitEvent"
    assert (validate_record(stream, body) == []) == schema_ok(name, body), json.dumps(body)


def test_standalone_ledger_keeps_data_and_key_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "firmware_sim.ledger",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "l.db"),
        "--key",
        str(tmp_path / "k.pem"),
    ]
    rec = full_record("hazards")
    keys = []
    for expected in (201, 200):
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+) public_key=(\S+)", line)
            assert m and int(m.group(1)) == port, line
            keys.append(m.group(2))
            wait_port(port)
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/hazards",
                data=json.dumps(rec).encode(),
                headers={"Idempotency-Key": rec["id"], "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == expected
        finally:
            stop_pid(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == 0
    assert keys[0] == keys[1] and len(base64.b64decode(keys[0])) == 32

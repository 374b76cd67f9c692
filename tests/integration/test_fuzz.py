"""Fuzz targets (Hypothesis) for the three places where outside bytes meet the gateway.

(a) Modbus register decoding: whatever a device sends, `decode` returns a finite float or
    raises CodecError (which the source turns into a BAD reading); nothing else escapes.
(b) Configuration: any mutation of the demo config, and any TOML-ish text, is either a
    config or a ConfigError whose every problem names a place and says what is wrong.
(c) The local HTTP API of a real running daemon: random methods, paths, headers and
    bodies, with and without a session: never a 5xx, never a write without a valid
    session + CSRF token, never an output energized, and the daemon keeps running.

Every target has an explicit example budget and prints how many examples it tried
(`pytest -s` shows the lines; the counts are also in each final assert message).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import socket
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st

from drivers.modbus.codec import ByteOrder, DataType, PointSpec, Table, WordOrder, decode
from drivers.modbus.errors import CodecError
from drivers.modbus.errors import ConfigError as SpecError
from firmware_sim.face_terminal import write_hmac_secret
from gateway.app.daemon import Daemon
from gateway.config import ConfigError, GatewayConfig
from gateway.config.loader import load, parse
from gateway.config.specs import modbus_specs
from gateway.status.auth import hash_password
from rules.events import Ack, Event, Silence
from tests.support.plant import DEMO, HORN, PERMISSIVE, plant
from tests.support.procs import Mosquitto, wait_for

DEMO_RAW: dict[str, Any] = tomllib.loads(DEMO.read_text())
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _report(name: str, counts: Counter[str]) -> str:
    line = f"fuzz[{name}]: {sum(counts.values())} examples " + json.dumps(dict(sorted(counts.items())))
    print(line)
    return line


# --------------------------------------------------------------------------- (a) Modbus codec

REALISTIC = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def point_specs(draw: st.DrawFn) -> PointSpec:
    """A PointSpec that its own validation accepts (any type, order; scales and loop ranges within +-1e6:
    beyond that a float overflow is possible, see test_decode_overflow_is_a_codec_error_not_a_good_inf)."""
    number = REALISTIC
    table = draw(st.sampled_from(list(Table)))
    dtype = draw(st.sampled_from(list(DataType)))
    loop = None
    if not table.is_bits and draw(st.booleans()):
        lo, hi = draw(number), draw(number)
        loop = (lo, hi) if lo != hi else None
    try:
        return PointSpec(
            signal=draw(st.sampled_from(["o2", "lel", "x"])),
            table=table,
            address=draw(st.integers(0, 65534)),
            dtype=dtype,
            word_order=draw(st.sampled_from(list(WordOrder))),
            byte_order=draw(st.sampled_from(list(ByteOrder))),
            scale=draw(number.filter(lambda x: x != 0)),
            offset=draw(number),
            current_loop=loop,
        )
    except SpecError:
        reject()  # e.g. a 32-bit value at address 65535: refused when built, never reaches decode


REGISTERS = st.one_of(
    st.lists(st.integers(0, 0xFFFF), max_size=4),  # includes empty and too-short frames
    st.lists(st.sampled_from([0, 1, 0x7F80, 0xFF80, 0x7FC0, 0x7F7F, 0xFFFF, 0x8000]), max_size=4),  # inf/NaN/max
    st.lists(st.integers(-(2**20), 2**20), max_size=4),  # a transport bug: values outside a register
)


def _decode_once(spec: PointSpec, regs: list[int], counts: Counter[str]) -> None:
    try:
        value = decode(spec, regs)
    except CodecError as exc:
        counts[f"codec_error:{exc.reason.value}"] += 1
        event(f"CodecError {exc.reason.value}")
        return
    counts["value"] += 1
    event("value")
    assert isinstance(value, float), f"decode returned {type(value).__name__} for {spec} {regs}"
    assert math.isfinite(value), f"decode returned a non-finite GOOD value {value!r} for {spec} {regs}"


def test_fuzz_modbus_decode_returns_a_finite_float_or_a_codec_error() -> None:
    counts: Counter[str] = Counter()

    @settings(FUZZ, max_examples=1500)
    @given(point_specs(), REGISTERS)
    def target(spec: PointSpec, regs: list[int]) -> None:
        _decode_once(spec, regs, counts)

    target()
    line = _report("modbus_decode", counts)
    assert counts["value"] > 100 and sum(counts.values()) >= 1000, line  # both outcomes were explored


@pytest.mark.parametrize(
    ("spec", "regs"),
    [
        (PointSpec("o2", Table.HOLDING, 0, DataType.FLOAT32, scale=1e300), [0x7F7F, 0xFFFF]),  # float32 max
        (PointSpec("t", Table.INPUT, 0, DataType.UINT16, scale=0.001, current_loop=(-1e308, 1e308)), [12000]),
    ],
    ids=["scale_overflow", "loop_span_overflow"],
)
def test_decode_overflow_is_a_codec_error_not_a_good_inf(spec: PointSpec, regs: list[int]) -> None:
    # Found by the fuzz target above when scales and loop ranges were unbounded (but PointSpec-valid).
    try:
        value = decode(spec, regs)
    except CodecError:
        return
    assert math.isfinite(value), f"decode returned {value!r}"


# --------------------------------------------------------------------------- (b) configuration

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["tank-t101", "bay-2", "relay-1", "t101_o2", "holding", "float32", "osha", "mqtt://x", ""]),
)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(raw: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        raw = raw[k]
    return raw


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The demo config with 1-4 random edits: drop a key, replace a value, add an unknown key, nest."""
    raw = copy.deepcopy(DEMO_RAW)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(raw) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(raw, path), path[-1]
        op = draw(st.sampled_from(["drop", "replace", "unknown_key", "wrap", "swap"]))
        event(f"mutation {op}")
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSONISH)
        elif op == "unknown_key" and isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=10))] = draw(JSONISH)
        elif op == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"value": parent[key]}
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            with contextlib.suppress(KeyError, IndexError, TypeError):
                parent[key] = copy.deepcopy(_parent(raw, other)[other[-1]])
    return raw


def _check_config_outcome(fn: Any, counts: Counter[str]) -> GatewayConfig | None:
    try:
        cfg = fn()
    except ConfigError as exc:
        assert exc.problems, f"ConfigError without problems: {exc}"
        for p in exc.problems:
            assert p.path.strip() and p.message.strip(), f"problem without a place or a message: {p!r}"
        counts["config_error"] += 1
        event("ConfigError")
        return None
    assert isinstance(cfg, GatewayConfig)
    counts["accepted"] += 1
    event("accepted")
    return cfg


def test_fuzz_config_mutations_give_a_config_or_a_config_error() -> None:
    counts: Counter[str] = Counter()

    @settings(FUZZ, max_examples=400)
    @given(mutated_configs())
    def target(raw: dict[str, Any]) -> None:
        _check_config_outcome(lambda: parse(raw, "fuzz", DEMO.parent), counts)

    target()
    line = _report("config_mutations", counts)
    assert counts["config_error"] > 50 and counts["accepted"] > 0, line


TOML_PIECES = st.sampled_from(
    [
        "[site]\n",
        'id = "p"\n',
        'gateway_id = "g"\n',
        "[[zones]]\n",
        'kind = "general"\n',
        "[[devices]]\n",
        'transport = "modbus_tcp"\n',
        "port = 502\n",
        "points = [{ signal = 's', address = 1 }]\n",
        "[engine]\n",
        "tick_s = nan\n",
        "tick_s = inf\n",
        "x = 1979-05-27T07:32:00Z\n",
        "a.b.c = 1\n",
        "[[site]]\n",
        '"\\u0000" = 1\n',
        "= = =\n",
        "[status]\nusers = [{ user = 'u', role = 'operator', password_hash = 'scrypt$1$1$1$$' }]\n",
        "[mqtt]\npassword_file = '/nonexistent/secret'\n",
        "\x00\n",
        "\ufeff",
        "#",
        "'''\n",
    ]
)
DEMO_LINES = DEMO.read_text().splitlines(keepends=True)
TOMLISH = st.one_of(
    st.lists(TOML_PIECES, max_size=12).map("".join),
    st.tuples(st.integers(0, len(DEMO_LINES)), st.integers(0, 3), st.lists(TOML_PIECES, max_size=2)).map(
        lambda t: "".join(DEMO_LINES[: t[0]] + t[2] + DEMO_LINES[t[0] + t[1] :])  # the demo, a few lines edited
    ),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def test_fuzz_config_files_give_a_config_or_a_config_error(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    f = tmp_path / "gw.toml"

    @settings(FUZZ, max_examples=300)
    @given(TOMLISH, st.booleans())
    def target(text: str, as_bytes: bool) -> None:
        if as_bytes:
            f.write_bytes(text.encode("utf-16"))  # not UTF-8 at all
        else:
            f.write_text(text, encoding="utf-8")
        _check_config_outcome(lambda: load(f), counts)

    target()
    line = _report("config_files", counts)
    assert counts["config_error"] > 100 and counts["accepted"] > 0, line


@pytest.mark.parametrize(
    "edit",
    [
        {"scale": 0.0},
        {"scale": float("nan")},
        {"scale": float("inf")},
        {"offset": float("nan")},
        {"current_loop": [float("nan"), 100.0]},
    ],
    ids=["scale0", "scale_nan", "scale_inf", "offset_nan", "loop_nan"],
)
def test_a_config_check_config_accepts_is_one_the_daemon_can_build(edit: dict[str, Any]) -> None:
    raw = copy.deepcopy(DEMO_RAW)
    raw["devices"][0]["points"][0].update(edit)
    try:
        cfg = parse(raw, "fuzz", DEMO.parent)
    except ConfigError:
        return  # refused with a place and a message: what we want
    modbus_specs(cfg)  # what Daemon.__init__ builds; must not raise for an accepted config


# --------------------------------------------------------------------------- (c) the local HTTP API

PASSWORD = "fuzz-operator-pw-1"
VIEWER_PASSWORD = "fuzz-viewer-pw-2"
WRITE_PATHS = ["/api/ack", "/api/silence", "/api/permits", "/api/outbox/retry", "/api/logout"]
PATHS = st.one_of(
    st.sampled_from(
        [
            *WRITE_PATHS,
            "/api/login",
            "/face/events",
            "/",
            "/api/state",
            "/api/session",
            "/healthz",
            "/metrics",
            "/api/trends/x",
            "/static/app.js",
            "/static/../../etc/passwd",
            "/static/..%2f..%2fetc%2fpasswd",
            "/static/%2e%2e/%2e%2e/etc/passwd",
            "/static/....//....//etc/passwd",
            "//etc/passwd",
            "/api/ack?zone=tank-t101",
            "/api/ack/../ack",
            "*",
            "http://evil.example/api/ack",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60).map(lambda s: "/" + s),
    st.integers(1000, 20000).map(lambda n: "/api/" + "a" * n),  # very long request lines
)
METHODS = st.one_of(
    st.just("POST"),  # the writes are what matters most: a third of the requests
    st.just("GET"),
    st.sampled_from(["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "G\x01T", "POST " * 3]),
)
HEADER_TOKEN = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
                       min_size=1, max_size=20)  # fmt: skip
HEADERS = st.lists(
    st.one_of(
        st.tuples(HEADER_TOKEN, st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)),
        st.tuples(st.just("Origin"), st.sampled_from(["http://evil.example", "null", "http://127.0.0.1"])),
        st.tuples(st.just("Content-Type"), st.sampled_from(["application/json", "text/plain", "multipart/form-data"])),
        st.tuples(st.just("Transfer-Encoding"), st.sampled_from(["chunked", "gzip", "identity"])),
        st.tuples(st.just("Content-Encoding"), st.sampled_from(["gzip", "deflate", "br"])),
    ),
    max_size=4,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["bay-2", "*", "outputs", "bay2_lel", "tank-t101x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["zone", "target", "id", "user", "password", "permit_id", "signature"]) | st.text(max_size=8),
        inner, max_size=4,
    ),
    max_leaves=10,
)  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"zone": JSON_VALUES, "target": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"user": JSON_VALUES, "password": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
)
# Session modes: anonymous; operator_no_csrf / operator_wrong_csrf: a live operator session, CSRF token
# missing or wrong; viewer_csrf: a live viewer session with its correct token (a real session, not allowed
# to write); forged: a made-up cookie; operator_csrf: a live operator session with its correct token.


def _raw_http(port: int, request: bytes, timeout: float = 5.0) -> int | None:
    """Send raw bytes, return the status code of the first response line (None: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(request)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf and time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            buf += chunk
    if not buf.startswith(b"HTTP/1."):
        return None
    return int(buf.split(b" ", 2)[1])


def _login(port: int, user: str, password: str) -> tuple[str, str]:
    """(session cookie, csrf token) over plain HTTP."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/api/login", json.dumps({"user": user, "password": password}),
                  {"Content-Type": "application/json"})  # fmt: skip
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 200, body
        cookie = r.getheader("Set-Cookie", "").split(";", 1)[0]
        return cookie, body["csrf"]
    finally:
        c.close()


def _build(method: str, path: str, headers: list[tuple[str, str]], body: bytes, cookie: str, csrf: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if csrf:
        lines.append(f"X-CSRF-Token: {csrf}")
    lines += [f"{k}: {v}" for k, v in headers]
    if any(k.lower() == "transfer-encoding" for k, _ in headers):
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"  # framed, so no read waits forever
    else:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


async def _fuzz_api(broker: Mosquitto, tmp: Path, modes: list[str], examples: int, name: str,
                    explicit: tuple[Any, ...] | None = None) -> None:  # fmt: skip
    """Run the daemon of the test plant and throw `examples` random requests at its local API."""
    key = tmp / "ft.key"
    write_hmac_secret(key, bytes(range(32)))
    ledger_key = tmp / "ledger.pub"
    ledger_key.write_bytes(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    async with plant(broker.port, tmp / "state") as p:
        p.raw["status"]["users"] = [
            {"user": "otto", "role": "operator", "password_hash": hash_password(PASSWORD)},
            {"user": "vera", "role": "viewer", "password_hash": hash_password(VIEWER_PASSWORD)},
        ]
        p.raw["face_terminals"] = [{"id": "ft-bay2", "zone": "bay-2", "alg": "hmac-sha256", "key_file": str(key)}]
        p.raw["ledger"] = {"public_key_file": str(ledger_key)}  # so /api/permits verifies what it gets
        d = Daemon(p.config())
        writes: list[Ack | Silence] = []
        put = d.inbox.put

        def spy(ev: Event) -> None:  # every write the web layer queues passes here
            if isinstance(ev, Ack | Silence):
                writes.append(ev)
            put(ev)

        d.inbox.put = spy  # type: ignore[method-assign]
        run = asyncio.create_task(d.run())
        port = p.http_port
        try:
            # A latched O2 alarm, back in range, waiting for an acknowledgement: an accepted ack
            # would energize the permissive and silence the horn, so any forged write shows.
            await wait_for(lambda: p.relay.coils[PERMISSIVE], 15, what="permissive on")
            p.tank.set_value("o2", 19.0)
            await wait_for(lambda: p.relay.coils[HORN] and not p.relay.coils[PERMISSIVE], 5, what="tripped")
            p.tank.set_value("o2", 20.9)
            await wait_for(lambda: d.state.signals["t101_o2"].value > 20.5, 5, what="back in range, still latched")
            coils_before = list(p.relay.coils)
            steps_before = d.state.steps
            outcome: dict[str, Any] = {}

            def fuzz() -> None:
                op_cookie, op_csrf = _login(port, "otto", PASSWORD)
                vw_cookie, vw_csrf = _login(port, "vera", VIEWER_PASSWORD)
                outcome["operator"] = (op_cookie, op_csrf)
                counts: Counter[str] = Counter()
                outcome["counts"] = counts
                t0 = time.monotonic()

                @settings(FUZZ, max_examples=examples)
                @given(METHODS, PATHS, HEADERS, BODIES, st.sampled_from(modes))
                def target(method: str, path: str, headers: list[tuple[str, str]], body: bytes, mode: str) -> None:
                    if time.monotonic() - t0 > 45:  # the time bound; counted, not silently skipped
                        counts["skipped_time_bound"] += 1
                        return
                    wrong = op_csrf[:-2] + ("AA" if not op_csrf.endswith("AA") else "BB")
                    cookie, csrf = {
                        "anonymous": ("", ""),
                        "operator_no_csrf": (op_cookie, ""),
                        "operator_wrong_csrf": (op_cookie, wrong),
                        "viewer_csrf": (vw_cookie, vw_csrf),
                        "forged": ("gw_session=" + "A" * 43, op_csrf),
                        "operator_csrf": (op_cookie, op_csrf),
                    }[mode]
                    if mode in ("viewer_csrf", "operator_csrf") and path.startswith("/api/logout"):
                        path = "/api/session"  # keep the real session for the next examples
                    n_writes = len(writes)
                    status = _raw_http(port, _build(method, path, headers, body, cookie, csrf))
                    counts[f"{mode}:{'closed' if status is None else status // 100}xx"] += 1
                    event(f"status {status}")
                    assert status is None or status < 500, f"{status} for {method} {path[:80]} {headers} {body[:80]!r}"
                    new = writes[n_writes:]
                    if mode == "operator_csrf":
                        # The only writes a fuzzed body can name: zone bay-2 (no latch there, no horn).
                        assert all(w.zone == "bay-2" and w.user == "otto" for w in new), new
                        counts["operator_csrf:write_queued"] += len(new)
                    else:
                        assert not new, f"a write was queued without a valid session+CSRF: {new}"
                    assert list(p.relay.coils) == coils_before, f"coils changed after {method} {path[:80]}"
                    assert run.done() is False, "the daemon stopped"

                if explicit is not None:
                    target = example(*explicit)(target)
                try:
                    target()
                finally:
                    outcome["seconds"] = time.monotonic() - t0

            try:
                await asyncio.to_thread(fuzz)
            finally:
                if "counts" in outcome:
                    _report(name, outcome["counts"])
            counts: Counter[str] = outcome["counts"]
            line = f"fuzz[{name}]: {sum(counts.values())} examples {dict(counts)} in {outcome['seconds']:.1f} s"

            # The daemon is alive and unchanged: no forged ack or silence, no permit, same coils, still stepping.
            assert all(w.zone == "bay-2" for w in writes) and not d.state.plant.permits, line
            assert not d.state.signals["t101_o2"].acked_by, line
            assert d.state.silenced_until.get("tank-t101", -1.0) < d.clock.monotonic(), line
            await wait_for(lambda: d.state.steps > steps_before + 20, 5, what="engine still stepping")
            assert list(p.relay.coils) == coils_before and not run.done(), line
            assert sum(counts.values()) >= examples and counts["skipped_time_bound"] == 0, line

            # The oracle can see a write: a real operator ack with the CSRF token is queued and clears.
            op_cookie, op_csrf = outcome["operator"]  # a new login may be rate limited by the fuzzed ones
            n = len(writes)
            body = json.dumps({"zone": "tank-t101", "target": "*"}).encode()
            req = _build("POST", "/api/ack", [("Content-Type", "application/json")], body, op_cookie, op_csrf)
            assert await asyncio.to_thread(_raw_http, port, req) == 202
            assert [type(w) for w in writes[n:]] == [Ack]
            await wait_for(lambda: p.relay.coils[PERMISSIVE] and not p.relay.coils[HORN], 5, what="legit ack applies")
        finally:
            d.request_stop()
            assert await asyncio.wait_for(run, 20) == 0


@pytest.mark.slow
async def test_fuzz_local_api_without_a_valid_session_and_csrf(broker: Mosquitto, tmp_path: Path) -> None:
    modes = ["anonymous", "operator_no_csrf", "operator_wrong_csrf", "viewer_csrf", "forged"]
    await _fuzz_api(broker, tmp_path, modes, 300, "local_api_unauthorized")


@pytest.mark.slow
async def test_fuzz_local_api_with_an_operator_session_and_csrf(broker: Mosquitto, tmp_path: Path) -> None:
    ack = ("POST", "/api/ack", [("Content-Type", "application/json")], b'{"zone": ["bay-2"]}', "operator_csrf")
    await _fuzz_api(broker, tmp_path, ["operator_csrf"], 150, "local_api_operator", explicit=ack)

"""Face sources against real transports: aiohttp on 127.0.0.1 and a real mosquitto.

Keys are written to tmp files by the tests and loaded with the driver's own loader; the
simulated terminal signs with its own code (firmware_sim/face_terminal.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from drivers.face import (
    BrokerUrl,
    FaceGate,
    FaceHttpServer,
    FaceLinkError,
    FaceMqttSource,
    FaceVerifier,
    KeyFileError,
    SeqStateError,
    SeqStore,
    TerminalCfg,
    VerifierCfg,
    face_routes,
    load_terminal_key,
)
from firmware_sim.face_terminal import FaceTerminalSim, Fault, write_ed25519_pair, write_hmac_secret
from rules.events import FaceMatch, Rejected
from tests.support.clock import FakeClock
from tests.support.procs import Mosquitto, wait_for


@dataclass
class Rig:
    gate: FaceGate
    events: list[FaceMatch | Rejected]
    hmac_sim: FaceTerminalSim
    ed_sim: FaceTerminalSim
    store: SeqStore
    cfg: VerifierCfg


@pytest.fixture
def keys(tmp_path: Path) -> tuple[VerifierCfg, FaceTerminalSim, FaceTerminalSim]:
    secret = write_hmac_secret(tmp_path / "ft-h.secret")
    seed = write_ed25519_pair(tmp_path / "ft-e.key", tmp_path / "ft-e.pub")
    hmac_key = load_terminal_key(tmp_path / "ft-h.secret", "hmac-sha256")
    ed_key = load_terminal_key(tmp_path / "ft-e.pub", "ed25519")
    assert hmac_key == secret
    cfg = VerifierCfg(
        terminals={
            "ft-h": TerminalCfg("ft-h", "zone-a", "hmac-sha256", hmac_key),
            "ft-e": TerminalCfg("ft-e", "zone-b", "ed25519", ed_key),
        }
    )
    return cfg, FaceTerminalSim("ft-h", "hmac-sha256", secret), FaceTerminalSim("ft-e", "ed25519", seed)


@pytest.fixture
def rig(keys: tuple[VerifierCfg, FaceTerminalSim, FaceTerminalSim], tmp_path: Path) -> Rig:
    cfg, hsim, esim = keys
    events: list[FaceMatch | Rejected] = []
    store = SeqStore(tmp_path / "face-seq.json")
    gate = FaceGate(FaceVerifier(cfg), events.append, store=store)
    return Rig(gate, events, hsim, esim, store, cfg)


@pytest.fixture
async def http_url(rig: Rig) -> AsyncIterator[str]:
    server = FaceHttpServer(rig.gate, "127.0.0.1", 0)
    port = await server.start()
    try:
        yield f"http://127.0.0.1:{port}/face/events"
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running(source: FaceMqttSource) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(), name="face_mqtt[test]")
    try:
        async with asyncio.timeout(10):
            await source.subscribed.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, FaceLinkError):
            await task


# ---------------------------------------------------------------- HTTP

HTTP_FAULTS = [
    (Fault.WRONG_KEY, 401, "bad_signature", "face:ft-h"),
    (Fault.STALE_PAST, 422, "stale_time", "face:ft-h"),
    (Fault.STALE_FUTURE, 422, "stale_time", "face:ft-h"),
    (Fault.WRONG_MODE, 422, "wrong_verify_mode", "face:ft-h"),
    (Fault.UNKNOWN_TERMINAL, 401, "unknown_terminal", "face:http:127.0.0.1"),
    (Fault.GARBAGE, 400, "malformed", "face:http:127.0.0.1"),
    (Fault.OVERSIZE, 413, "oversize", "face:http:127.0.0.1"),
    (Fault.REPLAY, 409, "replayed_sequence", "face:ft-h"),
    (Fault.OLD_CANON, 400, "old_canon", "face:ft-h"),
]


async def test_http_accepts_signed_events_from_both_kinds_of_terminal(rig: Rig, http_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        h = await rig.hmac_sim.post(s, http_url, rig.hmac_sim.event("E1"))
        e = await rig.ed_sim.post(s, http_url, rig.ed_sim.event("E2"))
    assert h == (202, {"accepted": True, "terminal": "ft-h", "seq": 1})
    assert e == (202, {"accepted": True, "terminal": "ft-e", "seq": 1})
    assert [(m.terminal, m.person, m.seq) for m in rig.events if isinstance(m, FaceMatch)] == [
        ("ft-h", "E1", 1),
        ("ft-e", "E2", 1),
    ]
    assert rig.gate.counts["accepted"] == 2
    assert rig.store.load() == {"ft-h": 1, "ft-e": 1}


@pytest.mark.parametrize(("fault", "status", "reason", "source"), HTTP_FAULTS, ids=[f[0].value for f in HTTP_FAULTS])
async def test_http_refuses_bad_events_with_the_reason(
    rig: Rig, http_url: str, fault: Fault, status: int, reason: str, source: str
) -> None:
    async with aiohttp.ClientSession() as s:
        first = await rig.hmac_sim.post(s, http_url, rig.hmac_sim.event("E1"))
        got_status, answer = await rig.hmac_sim.post(s, http_url, rig.hmac_sim.event("E1", fault=fault))
    assert first[0] == 202
    assert (got_status, answer["accepted"], answer["reason"]) == (status, False, reason)
    assert answer["detail"]
    rejected = [e for e in rig.events if isinstance(e, Rejected)]
    assert [(r.source, r.reason) for r in rejected] == [(source, reason)]
    assert {k: v for k, v in rig.gate.counts.items() if v} == {"accepted": 1, reason: 1}


async def test_http_oversize_chunked_body_is_cut_off_without_reading_it_all(rig: Rig, http_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 KiB offered, no Content-Length
            yield b"x" * 1024

    async with aiohttp.ClientSession() as s, s.post(http_url, data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "oversize"
    assert rig.gate.counts["oversize"] == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_http_a_body_that_cannot_be_decoded_is_a_400_not_a_500(rig: Rig, http_url: str, encoding: str) -> None:
    """Found by the API fuzzer: POST /face/events with Content-Encoding gzip and b"\\x00\\x00" was a 500."""
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    # Sent with the headers, aiohttp's parser may refuse it first (a plain 400); arriving later, the
    # handler reads it and refuses it (a counted, named 400). Never a 500.
    async with aiohttp.ClientSession() as s, s.post(http_url, data=b"\x00\x00", headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        if resp.content_type == "application/json":
            assert (await resp.json())["reason"] == "malformed"
            assert rig.gate.counts["malformed"] == 1

    async def late_body() -> AsyncIterator[bytes]:  # headers first, the broken body in a later packet
        await asyncio.sleep(0)
        yield b"\x00\x00"

    async with aiohttp.ClientSession() as s, s.post(http_url, data=late_body(), headers=headers) as resp:
        assert resp.status == 400, await resp.text()


async def test_http_other_methods_and_paths_are_not_500(http_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(http_url) as r1:
            assert r1.status == 405
        async with s.post(http_url.replace("/face/events", "/face/other"), data=b"{}") as r2:
            assert r2.status == 404


async def test_routes_mount_on_a_host_application(rig: Rig) -> None:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(dict(rig.gate.counts))

    app = web.Application()
    app.add_routes([web.get("/status", status), *face_routes(rig.gate)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as s:
            code, _ = await rig.ed_sim.post(s, f"http://127.0.0.1:{port}/face/events", rig.ed_sim.event("E9"))
            async with s.get(f"http://127.0.0.1:{port}/status") as r:
                counts = await r.json()
    finally:
        await runner.cleanup()
    assert code == 202 and counts["accepted"] == 1


async def test_http_port_in_use_is_a_link_error(rig: Rig, http_url: str) -> None:
    port = int(http_url.split(":")[2].split("/")[0])
    with pytest.raises(FaceLinkError, match="cannot listen"):
        await FaceHttpServer(rig.gate, "127.0.0.1", port).start()


# ---------------------------------------------------------------- MQTT


async def test_mqtt_feeds_events_through_the_same_verifier(rig: Rig, broker: Mosquitto) -> None:
    source = FaceMqttSource(rig.gate, broker.url, topics=["face/+/events"])
    async with running(source), aiomqtt.Client("127.0.0.1", broker.port) as pub:
        await rig.hmac_sim.publish(pub, rig.hmac_sim.event("E1"))
        await rig.ed_sim.publish(pub, rig.ed_sim.event("E2"))
        for fault in (Fault.REPLAY, Fault.GARBAGE, Fault.WRONG_KEY, Fault.STALE_PAST, Fault.WRONG_MODE):
            await rig.ed_sim.publish(pub, rig.ed_sim.event("E2", fault=fault))
        await rig.hmac_sim.publish(pub, rig.hmac_sim.event("E3"))
        await wait_for(lambda: len(rig.events) >= 8, timeout=10, what="8 face events")
    summary = [
        (e.terminal, e.person) if isinstance(e, FaceMatch) else (e.source, e.reason) for e in rig.events
    ]
    assert summary == [
        ("ft-h", "E1"),
        ("ft-e", "E2"),
        ("face:ft-e", "replayed_sequence"),
        ("face:mqtt:face/ft-e/events", "malformed"),
        ("face:ft-e", "bad_signature"),
        ("face:ft-e", "stale_time"),
        ("face:ft-e", "wrong_verify_mode"),
        ("ft-h", "E3"),
    ]


async def test_event_accepted_over_http_cannot_be_replayed_over_mqtt(
    rig: Rig, http_url: str, broker: Mosquitto
) -> None:
    raw = rig.hmac_sim.event("E1")
    async with aiohttp.ClientSession() as s:
        assert (await rig.hmac_sim.post(s, http_url, raw))[0] == 202
    async with running(FaceMqttSource(rig.gate, broker.url)), aiomqtt.Client("127.0.0.1", broker.port) as pub:
        await rig.hmac_sim.publish(pub, raw)
        await wait_for(lambda: len(rig.events) >= 2, timeout=10, what="the replay's verdict")
    assert rig.events[1] == Rejected("face:ft-h", "replayed_sequence", "seq 1 <= last 1")


async def test_mqtt_garbage_flood_is_counted_and_logged_rate_limited(rig: Rig, broker: Mosquitto) -> None:
    with capture_logs() as logs:
        async with running(FaceMqttSource(rig.gate, broker.url)), aiomqtt.Client("127.0.0.1", broker.port) as pub:
            for _ in range(30):
                await rig.hmac_sim.publish(pub, rig.hmac_sim.event("E1", fault=Fault.GARBAGE))
            await rig.hmac_sim.publish(pub, rig.hmac_sim.event("E1"))
            await wait_for(lambda: rig.gate.counts["accepted"] == 1, timeout=10, what="the good event after garbage")
    assert rig.gate.counts["malformed"] == 30
    assert [entry["reason"] for entry in logs if entry["event"] == "face_event_rejected"] == ["malformed"]


async def test_mqtt_broker_loss_raises_a_link_error(rig: Rig, broker: Mosquitto) -> None:
    source = FaceMqttSource(rig.gate, broker.url, timeout_s=2)
    task = asyncio.create_task(source.run())
    async with asyncio.timeout(10):
        await source.subscribed.wait()
    broker.stop()
    with pytest.raises(FaceLinkError, match="MQTT link lost"):
        async with asyncio.timeout(10):
            await task
    assert not source.subscribed.is_set()


async def test_mqtt_unreachable_broker_raises_a_link_error(rig: Rig, broker: Mosquitto) -> None:
    broker.stop()
    with pytest.raises(FaceLinkError):
        async with asyncio.timeout(10):
            await FaceMqttSource(rig.gate, broker.url, timeout_s=2).run()


# ---------------------------------------------------------------- gate, state, files


async def test_rejection_logs_resume_after_the_quiet_period_with_the_suppressed_count(rig: Rig) -> None:
    clock = FakeClock(mono=100.0, utc=datetime.now(UTC))
    gate = FaceGate(FaceVerifier(rig.cfg), rig.events.append, clock=clock, log_every_s=10.0)
    with capture_logs() as logs:
        for _ in range(4):
            await gate.submit(b"junk", "http:10.0.0.1")
        clock.advance(10.0)
        await gate.submit(b"junk", "http:10.0.0.1")
    assert [e["suppressed"] for e in logs if e["event"] == "face_event_rejected"] == [0, 3]


async def test_async_emit_is_awaited(rig: Rig) -> None:
    got: list[object] = []

    async def emit(ev: FaceMatch | Rejected) -> None:
        await asyncio.sleep(0)
        got.append(ev)

    gate = FaceGate(FaceVerifier(rig.cfg), emit)
    verdict = await gate.submit(rig.hmac_sim.event("E1"), "http:x")
    assert got == [verdict]


async def test_restored_state_refuses_a_replay_after_restart(rig: Rig, http_url: str) -> None:
    raw = rig.hmac_sim.event("E1")
    async with aiohttp.ClientSession() as s:
        assert (await rig.hmac_sim.post(s, http_url, raw))[0] == 202
    restarted = FaceGate(FaceVerifier(rig.cfg).with_last_seq(rig.store.load()), rig.events.append)
    verdict = await restarted.submit(raw, "http:x")
    assert getattr(verdict, "reason", None) == "replayed_sequence"


def test_seq_store_missing_is_empty_and_corrupt_is_an_error(tmp_path: Path) -> None:
    store = SeqStore(tmp_path / "seq.json")
    assert store.load() == {}
    store.save({"ft-1": 7})
    assert store.load() == {"ft-1": 7}
    (tmp_path / "seq.json").write_text("{not json")
    with pytest.raises(SeqStateError, match="corrupt"):
        store.load()
    with pytest.raises(SeqStateError, match="cannot write"):
        SeqStore(tmp_path / "no-such-dir" / "seq.json").save({})


@pytest.fixture
def pem_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ec_pub": ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "bad_pem": b"-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        "short_hex": b"00112233\n",
        "not_hex": b"correct horse battery staple\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    write_ed25519_pair(tmp_path / "ed.key", tmp_path / "ed.pub")
    paths["ed_private"] = tmp_path / "ed.key"
    paths["hmac_as_ed"] = tmp_path / "hmac.secret"
    write_hmac_secret(paths["hmac_as_ed"])
    yield paths


@pytest.mark.parametrize(
    ("name", "alg", "problem"),
    [
        ("missing", "hmac-sha256", "does not exist"),
        ("short_hex", "hmac-sha256", "HMAC secret is 4 bytes, need at least 32"),
        ("not_hex", "hmac-sha256", "is not hex text"),
        ("ed_private", "ed25519", "holds a PRIVATE key"),
        ("bad_pem", "ed25519", "bad PEM"),
        ("ec_pub", "ed25519", "not an Ed25519 public key"),
        ("hmac_as_ed", "ed25519", "is not a PEM public key"),
    ],
)
def test_key_file_errors_name_the_file_and_the_fix(
    pem_files: dict[str, Path], tmp_path: Path, name: str, alg: str, problem: str
) -> None:
    path = pem_files.get(name, tmp_path / name)
    with pytest.raises(KeyFileError) as info:
        load_terminal_key(path, alg)  # type: ignore[arg-type]
    assert info.value.path == path
    assert problem in info.value.problem
    assert str(path) in str(info.value) and "fix:" in str(info.value)


def test_key_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is a directory"):
        load_terminal_key(tmp_path, "hmac-sha256")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerUrl("127.0.0.1", 1884, False)),
        ("mqtts://gw:s%40cret@broker.plant", BrokerUrl("broker.plant", 8883, True, "gw", "s@cret")),
    ],
)
def test_broker_url(url: str, expected: BrokerUrl) -> None:
    assert BrokerUrl.parse(url) == expected
    assert "cret" not in str(BrokerUrl.parse(url))


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "mqtt://h:notaport"])
def test_broker_url_refuses_nonsense(url: str) -> None:
    with pytest.raises(ValueError, match="broker url"):
        BrokerUrl.parse(url)

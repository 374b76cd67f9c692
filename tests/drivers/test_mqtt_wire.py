"""drivers.mqtt_in.wire, the input's MQTT 3.1.1 subscriber: against mosquitto, and against a
scripted broker on 127.0.0.1 that splits, corrupts and withholds packets."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomqtt
import pytest

from drivers.mqtt_in.wire import Connection, WireError, _utf8, _varint
from tests.support.procs import Mosquitto, mosquitto

CONNACK_OK = b"\x20\x02\x00\x00"


def publish(topic: bytes, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_packet(r: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await r.readexactly(1))[0]
    length, mult = 0, 1
    while True:
        b = (await r.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return head, await r.readexactly(length)


@contextlib.asynccontextmanager
async def fake_broker(script: Script, connects: list[bytes] | None = None) -> AsyncIterator[int]:
    """A broker that reads CONNECT (its body appended to `connects`), then runs `script`."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head, body = await read_packet(r)
            assert head == 0x10
            if connects is not None:
                connects.append(body)
            await script(r, w)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # teardown; ending normally keeps asyncio's stream callback quiet
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def open_to(port: int, keepalive_s: int = 60, **kw: object) -> Connection:
    return await Connection.open("127.0.0.1", port, client_id="t", keepalive_s=keepalive_s, timeout_s=3, **kw)


async def test_against_mosquitto_qos0_qos1_retained_and_credentials_absent() -> None:
    with mosquitto() as broker:
        conn = await open_to(broker.port)
        try:
            assert await conn.subscribe([("a/#", 1), ("b/+", 0)]) == [1, 0]
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="pub") as pub:
                await pub.publish("a/x", b"one", qos=1, retain=True)
                await pub.publish("b/y", b"two", qos=0)
                await pub.publish("a/é", b"three", qos=1)
            got = []
            async with asyncio.timeout(5):
                while len(got) < 3:
                    got += await conn.batch(10)
            assert [(m.topic, m.payload, m.qos) for m in got] == [
                ("a/x", b"one", 1),
                ("b/y", b"two", 0),
                ("a/é", b"three", 1),
            ]
            # Live delivery of a retained publish to a subscriber that is already there carries no retain flag.
            assert not got[0].retain
        finally:
            conn.close()
        # A second session sees the retained message as retained.
        conn = await open_to(broker.port)
        try:
            await conn.subscribe([("a/x", 0)])
            async with asyncio.timeout(5):
                (m,) = await conn.batch(10)
            assert m.retain and m.payload == b"one"
        finally:
            conn.close()


async def test_packets_split_byte_by_byte_and_qos1_is_acknowledged() -> None:
    acked: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(CONNACK_OK)
        head, body = await read_packet(r)  # SUBSCRIBE
        assert head == 0x82
        w.write(b"\x90\x03" + body[:2] + b"\x01")
        big = b"x" * 300  # a two-byte remaining length
        for b in publish(b"t/1", b"small", qos=1, pid=0x1234) + publish(b"t/2", big):
            w.write(bytes([b]))
            await w.drain()
        head, body = await read_packet(r)
        acked.set_result(bytes([head]) + body)
        await asyncio.sleep(5)

    async with fake_broker(script) as port:
        conn = await open_to(port)
        try:
            assert await conn.subscribe([("t/#", 1)]) == [1]
            got = []
            async with asyncio.timeout(5):
                while len(got) < 2:
                    got += await conn.batch(10)
                assert await acked == b"\x40\x12\x34"
            assert [(m.topic, len(m.payload)) for m in got] == [("t/1", 5), ("t/2", 300)]
        finally:
            conn.close()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "more than 4 bytes"),
        (b"\x30" + _varint(64 * 1024 * 1024), "exceeds the limit"),
        (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
        (b"\x30\x03\x00\x09t", "topic longer than the packet"),
        (b"\xa0\x02\x00\x01", "unexpected packet type 10"),
    ],
)
async def test_protocol_violations_close_the_connection_with_a_reason(bad: bytes, match: str) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(CONNACK_OK + publish(b"ok", b"before") + bad)
        await asyncio.sleep(5)

    async with fake_broker(script) as port:
        conn = await open_to(port)
        try:
            async with asyncio.timeout(5):
                first = await conn.batch(10)  # what came before the violation is still delivered
                assert [m.payload for m in first] == [b"before"]
                with pytest.raises(WireError, match=match):
                    await conn.batch(10)
        finally:
            conn.close()


async def test_non_utf8_topic_is_delivered_as_none_not_fatal() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(CONNACK_OK + publish(b"\xff\xfe", b"x") + publish(b"fine", b"y"))
        await asyncio.sleep(5)

    async with fake_broker(script) as port:
        conn = await open_to(port)
        try:
            got = []
            async with asyncio.timeout(5):
                while len(got) < 2:
                    got += await conn.batch(10)
            assert [m.topic for m in got] == [None, "fine"]
        finally:
            conn.close()


@pytest.mark.parametrize(("code", "match"), [(4, "bad user name or password"), (5, "not authorized"), (9, "code 9")])
async def test_refused_connect_names_the_reason(code: int, match: str) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"\x20\x02\x00" + bytes([code]))
        await asyncio.sleep(5)

    async with fake_broker(script) as port:
        with pytest.raises(WireError, match=match):
            await open_to(port, username="u", password="p")


async def test_connect_packet_carries_credentials_and_clean_session() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(CONNACK_OK)
        await asyncio.sleep(5)

    connects: list[bytes] = []
    async with fake_broker(script, connects) as port:
        conn = await Connection.open(
            "127.0.0.1", port, client_id="gw-in", keepalive_s=15, username="u", password="s3cret", timeout_s=3
        )
        conn.close()
    assert connects == [
        _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", 15) + _utf8("gw-in") + _utf8("u") + _utf8("s3cret")
    ]


async def test_silent_broker_is_detected_by_keepalive() -> None:
    pings = 0

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal pings
        w.write(CONNACK_OK)
        while True:  # read PINGREQs, never answer
            head, _ = await read_packet(r)
            pings += head == 0xC0

    async with fake_broker(script) as port:
        conn = await open_to(port, keepalive_s=1)
        try:
            async with asyncio.timeout(5):
                with pytest.raises(WireError, match="no answer from the broker"):
                    await conn.batch(10)
            assert pings >= 1
        finally:
            conn.close()


async def test_no_connack_times_out_and_refused_port_is_a_wire_error() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with fake_broker(script) as port:
        with pytest.raises(WireError, match="no CONNACK"):
            await Connection.open("127.0.0.1", port, client_id="t", keepalive_s=5, timeout_s=0.3)
    with pytest.raises(WireError, match="cannot connect"):
        await open_to(port)  # the fake broker is gone: connection refused


async def test_a_slow_consumer_pauses_reading_and_loses_nothing() -> None:
    n = 5_000

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(CONNACK_OK)
        w.write(b"".join(publish(b"t", str(i).encode()) for i in range(n)))
        await w.drain()
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        conn = await open_to(port, high_water=100)
        try:
            got: list[bytes] = []
            async with asyncio.timeout(10):
                while len(got) < n:
                    batch = await conn.batch(7)
                    assert len(batch) <= 7
                    # Reading pauses near the high-water mark (a socket read can overshoot it by one read).
                    assert len(conn._p.messages) < 100 + 5_000
                    got += [m.payload for m in batch]
            assert got == [str(i).encode() for i in range(n)]
            assert conn._p._paused is False
        finally:
            conn.close()


async def test_broker_going_away_ends_the_batch_wait() -> None:
    broker: Mosquitto
    with mosquitto() as broker:
        conn = await open_to(broker.port)
        await conn.subscribe([("x", 0)])
        waiter = asyncio.create_task(conn.batch(1))
        await asyncio.sleep(0)
        broker.stop()
        async with asyncio.timeout(5):
            with pytest.raises(WireError, match="connection"):
                await waiter
        conn.close()

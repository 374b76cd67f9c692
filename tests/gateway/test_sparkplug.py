"""Sparkplug B edge node against a real mosquitto, checked by a test host application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from gateway.northbound.sparkplug import (
    BD_SEQ,
    REBIRTH,
    DataType,
    MetricDef,
    SparkplugError,
    SparkplugNode,
    check_value,
    float32,
    metric_value,
    set_value,
)
from gateway.northbound.sparkplug_pb2 import Payload  # type: ignore[attr-defined]
from tests.support.procs import Mosquitto, wait_for
from tests.support.sparkplug_host import SparkplugHost, TcpLink

GROUP = "plant-a"
NODE = "gw-1"
T0 = 1_700_000_000_000


class Ms:
    """Injected UTC clock in ms: advances 1 ms per read, so every timestamp differs."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1
        return self.now


def zone_metrics() -> list[MetricDef]:
    return [
        MetricDef("gas/t101_o2", DataType.Float, 20.9),
        MetricDef("gas/t101_o2/quality", DataType.String, "GOOD"),
        MetricDef("zone/state", DataType.String, None),
        MetricDef("zone/evacuate", DataType.Boolean, False),
        MetricDef("outputs/horn", DataType.Boolean, False),
        MetricDef("counts/people", DataType.Int32, 0),
    ]


def make_node(url: str, **kw: object) -> SparkplugNode:
    return SparkplugNode(
        url,
        GROUP,
        NODE,
        {"zone-1": zone_metrics(), "zone-2": zone_metrics()},
        Ms(),
        node_metrics=[MetricDef("Properties/version", DataType.String, "1.2.3")],
        keepalive_s=5,
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(node: SparkplugNode) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(node.run(), name="sparkplug[test]")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def births_seen(host: SparkplugHost, n_nbirth: int = 1) -> None:
    """Wait until the host has `n_nbirth` NBIRTHs, each followed by both DBIRTHs."""
    await wait_for(lambda: len(host.of("NBIRTH")) >= n_nbirth and len(host.of("DBIRTH")) >= 2 * n_nbirth,
                   timeout=10, what=f"{n_nbirth} NBIRTH + DBIRTHs")


@pytest.fixture
def node_url(broker: Mosquitto) -> Iterator[str]:
    yield broker.url


# ---- the payload codec, pure --------------------------------------------------------------
@pytest.mark.parametrize(
    ("dt", "value", "field"),
    [
        (DataType.Int8, -5, "int_value"),
        (DataType.Int16, -32768, "int_value"),
        (DataType.Int32, 2_147_483_647, "int_value"),
        (DataType.Int64, -1, "long_value"),
        (DataType.UInt8, 255, "int_value"),
        (DataType.UInt32, 4_294_967_295, "int_value"),
        (DataType.UInt64, 2**64 - 1, "long_value"),
        (DataType.DateTime, T0, "long_value"),
        (DataType.Float, float32(20.9), "float_value"),
        (DataType.Double, 20.9, "double_value"),
        (DataType.Boolean, True, "boolean_value"),
        (DataType.String, "ALARM_HIGH", "string_value"),
        (DataType.Bytes, b"\x00\xff", "bytes_value"),
        (DataType.Float, None, None),
    ],
)
def test_value_round_trips_through_the_wire(dt: DataType, value: object, field: str | None) -> None:
    p = Payload()
    m = p.metrics.add(name="x", datatype=int(dt))
    check_value(dt, value, "test")  # type: ignore[arg-type]
    set_value(m, dt, value)  # type: ignore[arg-type]
    back = Payload.FromString(p.SerializeToString()).metrics[0]
    assert back.WhichOneof("value") == field
    assert back.is_null == (value is None)
    assert metric_value(back) == value


@pytest.mark.parametrize(
    ("dt", "value"),
    [(DataType.Int8, 128), (DataType.UInt16, -1), (DataType.Int32, True), (DataType.Float, "1.0"),
     (DataType.Boolean, 1), (DataType.String, 3), (DataType.Template, None)],
)
def test_wrong_values_are_refused_at_the_call(dt: DataType, value: object) -> None:
    with pytest.raises(SparkplugError):
        MetricDef("x", dt, value)  # type: ignore[arg-type]


def test_unknown_names_and_bad_ids_name_the_place() -> None:
    node = make_node("mqtt://127.0.0.1:1")
    with pytest.raises(SparkplugError, match=r"update\(zone-9, gas/t101_o2\)"):
        node.update("zone-9", "gas/t101_o2", 1.0, T0)
    with pytest.raises(SparkplugError, match="Float needs a float"):
        node.update("zone-1", "gas/t101_o2", "high", T0)
    with pytest.raises(SparkplugError, match="reserved"):
        node.set_node_metric(BD_SEQ, 3)
    with pytest.raises(SparkplugError, match="without"):
        SparkplugNode("mqtt://127.0.0.1:1", "a/b", NODE, {}, Ms())
    with pytest.raises(SparkplugError, match="mqtt://"):
        SparkplugNode("http://127.0.0.1:1", GROUP, NODE, {}, Ms())


def test_updates_coalesce_per_metric_while_waiting() -> None:
    node = make_node("mqtt://127.0.0.1:1")
    for i in range(5):
        node.update("zone-1", "gas/t101_o2", 19.0 + i, T0 + i)
    node.update("zone-1", "zone/evacuate", False, T0)  # unchanged: nothing to send
    assert (node.pending, node.coalesced) == (1, 4)


# ---- against the broker ----------------------------------------------------------------------
async def test_births_then_data_with_continuous_seq(node_url: str) -> None:
    node = make_node(node_url)
    async with SparkplugHost(node_url, GROUP) as host, running(node):
        await births_seen(host)
        nb = host.of("NBIRTH")[0]
        assert host.from_node(NODE)[0] is nb
        assert (nb.seq, nb.bd_seq, nb.value(REBIRTH), nb.value("Properties/version")) == (0, 0, False, "1.2.3")
        assert nb.metric(BD_SEQ).datatype == DataType.UInt64
        db = host.of("DBIRTH")
        assert [(m.device, m.seq) for m in db] == [("zone-1", 1), ("zone-2", 2)]
        assert host.decoded(db[0]) == {
            "gas/t101_o2": float32(20.9), "gas/t101_o2/quality": "GOOD", "zone/state": None,
            "zone/evacuate": False, "outputs/horn": False, "counts/people": 0,
        }
        assert {m.name: m.datatype for m in db[0].payload.metrics}["counts/people"] == DataType.Int32

        node.update("zone-2", "gas/t101_o2", 18.5, T0 + 10)
        node.update("zone-2", "gas/t101_o2/quality", "BAD", T0 + 10)
        await wait_for(lambda: len(host.of("DDATA")) >= 1, what="DDATA")
        node.update("zone-1", "counts/people", -3, T0 + 11)
        node.set_node_metric("Properties/version", "1.2.4")
        await wait_for(lambda: len(host.of("DDATA")) >= 2 and len(host.of("NDATA")) >= 1, what="DDATA+NDATA")
        d1, d2 = host.of("DDATA")
        assert (d1.device, d1.seq) == ("zone-2", 3)
        assert host.decoded(d1) == {"gas/t101_o2": 18.5, "gas/t101_o2/quality": "BAD"}
        assert [m.timestamp for m in d1.payload.metrics] == [T0 + 10, T0 + 10]
        assert not any(m.HasField("name") for m in d1.payload.metrics)  # aliases after the birth
        assert host.decoded(d2) == {"counts/people": -3}
        assert host.decoded(host.of("NDATA")[0]) == {"Properties/version": "1.2.4"}
        assert host.violations(NODE) == []
        assert node.status()["connected"] and node.births == 1


async def test_seq_wraps_after_255(node_url: str) -> None:
    node = make_node(node_url, aliases=False)
    async with SparkplugHost(node_url, GROUP) as host, running(node):
        await births_seen(host)
        for i in range(300):  # one DDATA per update: wait until each one left before the next
            before = node.sent
            node.update("zone-1" if i % 2 else "zone-2", "counts/people", i + 1, T0 + i)
            await wait_for(lambda: node.sent > before, interval=0.001, what=f"DDATA {i}")  # noqa: B023
        await wait_for(lambda: len(host.of("DDATA")) >= 300, what="300 DDATA at the host")
        seqs = [m.seq for m in host.from_node(NODE)]
        assert seqs[:3] == [0, 1, 2] and seqs[255:258] == [255, 0, 1] and len(seqs) == 303
        assert host.decoded(host.of("DDATA")[-1]) == {"counts/people": 300}
        assert host.of("DDATA")[-1].payload.metrics[0].name == "counts/people"  # aliases=False: names
        assert host.violations(NODE) == []


async def test_rebirth_command_restarts_seq_with_the_same_bdseq(node_url: str) -> None:
    node = make_node(node_url)
    async with SparkplugHost(node_url, GROUP) as host, running(node):
        await births_seen(host)
        node.update("zone-1", "zone/state", "EVACUATE", T0 + 5)
        await wait_for(lambda: len(host.of("DDATA")) == 1, what="DDATA")
        await host.rebirth(NODE)
        await births_seen(host, 2)
        alias = host.of("NBIRTH")[0].metric(REBIRTH).alias
        await host.rebirth(NODE, by_alias=alias)
        await births_seen(host, 3)
        nbirths = host.of("NBIRTH")
        assert [(m.seq, m.bd_seq) for m in nbirths] == [(0, 0), (0, 0), (0, 0)]
        assert host.decoded(host.of("DBIRTH", "zone-1")[-1])["zone/state"] == "EVACUATE"  # current values
        assert (node.births, node.rebirth_requests, node.bad_commands) == (3, 2, 0)
        assert host.violations(NODE) == []


async def test_malformed_commands_are_counted_not_raised(node_url: str) -> None:
    node = make_node(node_url)
    ncmd = f"spBv1.0/{GROUP}/NCMD/{NODE}"
    async with SparkplugHost(node_url, GROUP) as host, running(node) as task:
        await births_seen(host)
        await host.publish(ncmd, b"\x0a\xff\xff")  # truncated field: does not decode
        rebirth_as_text = Payload()
        rebirth_as_text.metrics.add(name=REBIRTH, string_value="yes")
        await host.publish(ncmd, rebirth_as_text.SerializeToString())
        await host.publish(ncmd, Payload(seq=1).SerializeToString())  # no metrics
        write = Payload()
        write.metrics.add(name="outputs/horn", boolean_value=True)
        await host.publish(ncmd, write.SerializeToString())
        await host.publish(f"spBv1.0/{GROUP}/DCMD/{NODE}/zone-1", write.SerializeToString())
        await wait_for(lambda: node.bad_commands + node.ignored_commands >= 5, what="commands counted")
        assert (node.bad_commands, node.ignored_commands, node.births) == (3, 2, 1)
        node.update("zone-1", "outputs/horn", True, T0 + 20)  # still alive and publishing
        await wait_for(lambda: len(host.of("DDATA")) == 1, what="DDATA after bad commands")
        assert not task.done()
        assert host.violations(NODE) == []


async def test_cut_connection_gives_the_will_then_next_bdseq(broker: Mosquitto) -> None:
    async with TcpLink(broker.port) as link, SparkplugHost(broker.url, GROUP) as host:
        node = make_node(link.url)
        async with running(node):
            await births_seen(host)
            node.update("zone-1", "zone/evacuate", True, T0 + 1)
            await wait_for(lambda: len(host.of("DDATA")) == 1, what="DDATA")
            link.cut()  # no DISCONNECT reaches the broker: it publishes the NDEATH will
            await wait_for(lambda: len(host.of("NDEATH")) == 1, what="NDEATH will")
            await births_seen(host, 2)
            node.update("zone-1", "zone/evacuate", False, T0 + 2)
            await wait_for(lambda: len(host.of("DDATA")) == 2, what="DDATA after reconnect")
        death = host.of("NDEATH")[0]
        assert (death.bd_seq, death.seq) == (0, None)
        assert [m.bd_seq for m in host.of("NBIRTH")] == [0, 1]
        assert host.decoded(host.of("DBIRTH", "zone-1")[-1])["zone/evacuate"] is True
        assert host.violations(NODE) == []
        assert link.accepted == 2


async def test_broker_restart_reconnects_with_next_bdseq(broker: Mosquitto) -> None:
    node = make_node(broker.url)
    async with running(node):
        async with SparkplugHost(broker.url, GROUP) as host:
            await births_seen(host)
        broker.kill()
        await wait_for(lambda: not node.connected, what="node sees the broker gone")
        broker.restart()
        async with SparkplugHost(broker.url, GROUP) as host:
            await host.rebirth(NODE)  # a host that starts late asks for the births it missed
            await wait_for(lambda: len(host.of("NBIRTH")) >= 1, what="NBIRTH after restart")
            assert host.of("NBIRTH")[0].bd_seq == 1
            assert node.last_error


async def test_goodbye_publishes_ndeath_and_stops(node_url: str) -> None:
    node = make_node(node_url)
    async with SparkplugHost(node_url, GROUP) as host, running(node) as task:
        await births_seen(host)
        await node.goodbye()
        assert task.done()
        await wait_for(lambda: len(host.of("NDEATH")) == 1, what="NDEATH")
        assert host.of("NDEATH")[0].bd_seq == 0
        assert not node.connected
        assert host.violations(NODE) == []


async def test_cancelled_run_still_says_ndeath(node_url: str) -> None:
    node = make_node(node_url)
    async with SparkplugHost(node_url, GROUP) as host:
        task = asyncio.create_task(node.run())
        await births_seen(host)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        await wait_for(lambda: len(host.of("NDEATH")) == 1, what="NDEATH on cancel")
        await node.goodbye()  # after cancellation: nothing left to do, returns at once
        assert len(host.of("NDEATH")) == 1


async def test_device_death_and_rebirth(node_url: str) -> None:
    node = make_node(node_url)
    async with SparkplugHost(node_url, GROUP) as host, running(node):
        await births_seen(host)
        node.set_device_alive("zone-2", False)
        await wait_for(lambda: len(host.of("DDEATH")) == 1, what="DDEATH")
        node.update("zone-2", "zone/state", "UNKNOWN", T0 + 3)  # dead: no DDATA, kept for its birth
        node.set_device_alive("zone-2", True)
        await wait_for(lambda: len(host.of("DBIRTH", "zone-2")) == 2, what="DBIRTH again")
        assert host.of("DDEATH")[0].seq == 3
        assert host.decoded(host.of("DBIRTH", "zone-2")[-1])["zone/state"] == "UNKNOWN"
        assert host.of("DDATA") == []
        assert host.violations(NODE) == []


async def test_changes_made_while_offline_arrive_in_the_births(broker: Mosquitto) -> None:
    node = make_node(broker.url)
    node.update("zone-1", "gas/t101_o2", 17.0, T0 + 1)
    node.update("zone-1", "gas/t101_o2", 16.5, T0 + 2)
    async with SparkplugHost(broker.url, GROUP) as host, running(node):
        await births_seen(host)
        o2 = next(m for m in host.of("DBIRTH", "zone-1")[0].payload.metrics if m.name == "gas/t101_o2")
        assert (metric_value(o2), o2.timestamp) == (16.5, T0 + 2)
        assert node.pending == 0 and host.of("DDATA") == []

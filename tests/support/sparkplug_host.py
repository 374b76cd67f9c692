"""A Sparkplug B host application for tests, and a TCP link that a test can cut.

`SparkplugHost` subscribes to `spBv1.0/{group}/#` on a real broker, decodes every payload
with the generated protobuf and keeps them in arrival order; `violations()` checks the
stream against the Sparkplug rules a real host relies on (birth first, seq continuity,
bdSeq pairing, DATA metrics declared in the birth).
`TcpLink` is a loopback TCP forwarder whose `cut()` drops every connection without an
MQTT DISCONNECT, as a pulled cable does, so the broker publishes the will.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiomqtt

from gateway.northbound.sparkplug import BD_SEQ, metric_value
from gateway.northbound.sparkplug_pb2 import Payload  # type: ignore[attr-defined]

_NODE_SEQ = {"NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH"}


@dataclass
class Msg:
    """One decoded Sparkplug message as the host saw it."""

    topic: str
    kind: str
    """NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH, NCMD or DCMD."""
    node: str
    device: str | None
    payload: Any
    """The decoded Payload (None if it did not decode)."""

    @property
    def seq(self) -> int | None:
        return int(self.payload.seq) if self.payload is not None and self.payload.HasField("seq") else None

    def metric(self, name: str) -> Any:
        """The metric of that name (births and deaths carry names)."""
        for m in self.payload.metrics:
            if m.name == name:
                return m
        raise KeyError(f"{self.kind} {self.topic} has no metric {name!r}")

    def value(self, name: str) -> Any:
        return metric_value(self.metric(name))

    @property
    def bd_seq(self) -> int:
        return int(self.metric(BD_SEQ).long_value)


@dataclass
class _Birth:
    names: dict[int, str] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)


class SparkplugHost:
    """Records and decodes everything under `spBv1.0/{group}/#`."""

    def __init__(self, url: str, group: str) -> None:
        self.url, self.group = url, group
        self.messages: list[Msg] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SparkplugHost:
        u = urlparse(self.url)
        self._client = aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883, identifier=f"test-host-{id(self)}")
        await self._client.__aenter__()
        await self._client.subscribe(f"spBv1.0/{self.group}/#", qos=1)
        self._task = asyncio.create_task(self._read(self._client), name="sparkplug_host[test]")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            parts = str(m.topic).split("/")
            raw = m.payload if isinstance(m.payload, bytes | bytearray) else b""
            try:
                p = Payload.FromString(bytes(raw))
            except Exception:  # the host records what it cannot decode rather than dying on it
                p = None
            self.messages.append(Msg(str(m.topic), parts[2], parts[3], parts[4] if len(parts) > 4 else None, p))

    async def publish(self, topic: str, payload: bytes) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1)

    async def rebirth(self, node: str, *, by_alias: int | None = None) -> None:
        """Send NCMD `Node Control/Rebirth`=true (by name, or by the alias from the NBIRTH)."""
        p = Payload()
        m = p.metrics.add(boolean_value=True, datatype=11)
        if by_alias is None:
            m.name = "Node Control/Rebirth"
        else:
            m.alias = by_alias
        await self.publish(f"spBv1.0/{self.group}/NCMD/{node}", p.SerializeToString())

    def of(self, kind: str, device: str | None = None) -> list[Msg]:
        return [m for m in self.messages if m.kind == kind and (device is None or m.device == device)]

    def from_node(self, node: str) -> list[Msg]:
        """What the node published (commands sent to it left out)."""
        return [m for m in self.messages if m.node == node and m.kind not in ("NCMD", "DCMD")]

    def decoded(self, msg: Msg) -> dict[str, Any]:
        """A DATA/BIRTH message's metrics as {name: value}, resolving aliases via the births before it."""
        births = self._births_before(msg)
        b = births.get(msg.device, _Birth())
        out: dict[str, Any] = {}
        for m in msg.payload.metrics:
            name = m.name if m.HasField("name") else b.names[m.alias]
            out[name] = metric_value(m, b.types.get(name))
        return out

    def _births_before(self, msg: Msg) -> dict[str | None, _Birth]:
        births: dict[str | None, _Birth] = {}
        for m in self.messages:
            if m is msg:
                break
            if m.node == msg.node and m.kind in ("NBIRTH", "DBIRTH"):
                b = births[m.device] = _Birth()
                for pm in m.payload.metrics:
                    b.names[pm.alias] = pm.name
                    b.types[pm.name] = pm.datatype
        return births

    def violations(self, node: str) -> list[str]:
        """Everything in the node's stream that a Sparkplug host would reject (empty: all good)."""
        bad: list[str] = []
        expect: int | None = None  # next seq; None until an NBIRTH
        bd: int | None = None
        births: dict[str | None, _Birth] = {}
        for i, m in enumerate(self.from_node(node)):
            where = f"#{i} {m.kind} {m.device or ''}"
            if m.payload is None:
                bad.append(f"{where}: payload does not decode")
                continue
            if m.kind == "NDEATH":
                if m.seq is not None:
                    bad.append(f"{where}: NDEATH carries a seq")
                if bd is not None and m.bd_seq != bd:
                    bad.append(f"{where}: NDEATH bdSeq {m.bd_seq} != NBIRTH bdSeq {bd}")
                expect, births = None, {}
                continue
            if m.kind == "NBIRTH":
                if m.seq != 0:
                    bad.append(f"{where}: NBIRTH seq {m.seq} != 0")
                bd, expect, births = m.bd_seq, 1, {}
            elif expect is None:
                bad.append(f"{where}: before any NBIRTH")
                continue
            elif m.seq != expect:
                bad.append(f"{where}: seq {m.seq} != expected {expect}")
            expect = ((m.seq or 0) + 1) % 256
            if m.kind in ("NBIRTH", "DBIRTH"):
                b = births[m.device] = _Birth()
                for pm in m.payload.metrics:
                    if not pm.name or not pm.HasField("datatype"):
                        bad.append(f"{where}: birth metric without name or datatype")
                    b.names[pm.alias] = pm.name
                    b.types[pm.name] = pm.datatype
            elif m.kind in ("NDATA", "DDATA"):
                seen = births.get(m.device if m.kind == "DDATA" else None)
                if seen is None:
                    bad.append(f"{where}: data before its birth")
                    continue
                for pm in m.payload.metrics:
                    name = pm.name if pm.HasField("name") else seen.names.get(pm.alias)
                    if name not in seen.types:
                        bad.append(f"{where}: metric {pm.name or pm.alias} not in the birth")
            elif m.kind == "DDEATH":
                births.pop(m.device, None)
            if m.kind not in _NODE_SEQ:
                bad.append(f"{where}: unexpected message kind")
        return bad


class TcpLink:
    """127.0.0.1 forwarder to a broker; `cut()` drops every connection abruptly (no DISCONNECT)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TcpLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.transport.abort()
            return
        self._writers |= {w, bw}
        for src, dst in ((r, bw), (br, w)):
            t = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except OSError:
            pass
        finally:
            w.transport.abort()
            self._writers.discard(w)

    def cut(self) -> None:
        """Reset every forwarded connection, both sides, at once."""
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

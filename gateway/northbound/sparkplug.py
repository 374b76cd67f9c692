"""Northbound Sparkplug B 3.0: the gateway as one edge node, one Sparkplug device per zone.

Topics are `spBv1.0/{group}/{NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH}/{node}[/{device}]`,
payloads the Sparkplug protobuf (gateway/northbound/sparkplug_b.proto). What a host application may rely on:

- Every MQTT CONNECT registers an NDEATH will (QoS 1, not retained) carrying `bdSeq`; the
  NBIRTH that follows carries the same `bdSeq`, so a host can tell which birth a death ends.
  `bdSeq` goes up by one (0..255, wrapping) for every new connection.
- NBIRTH has seq 0; every NBIRTH/NDATA/DBIRTH/DDATA/DDEATH after it takes the next seq (mod 256).
- A DBIRTH lists every metric of a device with its datatype and current value; DDATA carries
  only the metrics that changed since (coalesced per metric: the latest value wins).
- An NCMD `Node Control/Rebirth`=true re-publishes NBIRTH (seq 0, same bdSeq) and all DBIRTHs.
  No other command is obeyed: outputs are decided locally, never written from the north.
- A clean stop publishes NDEATH itself before disconnecting (a clean DISCONNECT discards the will).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import urlparse

import aiomqtt
import structlog
from google.protobuf.message import DecodeError

from gateway.northbound.mqtt_out import NO_DELAY
from gateway.northbound.sparkplug_pb2 import Payload  # type: ignore[attr-defined]

log = structlog.get_logger("sparkplug")

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
LOG_EVERY_MS = 60_000
"""A repeated bad or ignored command is logged at most once a minute (with the count since)."""

Value = bool | int | float | str | bytes


class DataType(IntEnum):
    """Sparkplug B datatype codes (Metric.datatype). Only the scalar ones can be a MetricDef."""

    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19


_INT_BITS = {
    DataType.Int8: (8, True),
    DataType.Int16: (16, True),
    DataType.Int32: (32, True),
    DataType.Int64: (64, True),
    DataType.UInt8: (8, False),
    DataType.UInt16: (16, False),
    DataType.UInt32: (32, False),
    DataType.UInt64: (64, False),
    DataType.DateTime: (64, False),
}
_STRINGS = {DataType.String, DataType.Text, DataType.UUID}
_BYTES = {DataType.Bytes, DataType.File}
_SCALARS = {*_INT_BITS, DataType.Float, DataType.Double, DataType.Boolean, *_STRINGS, *_BYTES}


class SparkplugError(Exception):
    """The node is used wrongly (unknown device or metric, value of the wrong type): a bug, not a field fault."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        """What was being done: `update(zone-1, gas/o2)`, `MetricDef(gas/o2)`, ..."""
        self.reason = reason
        """What is wrong and how to fix it."""
        super().__init__(f"{where}: {reason}")


def check_value(datatype: DataType, value: Value | None, where: str) -> None:
    """Raise SparkplugError unless `value` fits `datatype` (None is always allowed: sent as is_null)."""
    if datatype not in _SCALARS:
        raise SparkplugError(where, f"datatype {datatype.name} is not supported here; use a scalar type")
    if value is None:
        return
    if datatype in _INT_BITS:
        bits, signed = _INT_BITS[datatype]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        want = f"an int in {lo}..{hi}"
    elif datatype in (DataType.Float, DataType.Double):
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a float"
    elif datatype is DataType.Boolean:
        ok, want = isinstance(value, bool), "a bool"
    elif datatype in _STRINGS:
        ok, want = isinstance(value, str), "a str"
    else:
        ok, want = isinstance(value, bytes), "bytes"
    if not ok:
        raise SparkplugError(where, f"{datatype.name} needs {want}, got {value!r}")


def set_value(m: Any, datatype: DataType, value: Value | None) -> None:
    """Write `value` into a Payload.Metric's value oneof (signed ints as two's complement, per the spec)."""
    if value is None:
        m.is_null = True
    elif datatype in _INT_BITS:
        bits, _ = _INT_BITS[datatype]
        if bits == 64:
            m.long_value = int(value) & 0xFFFF_FFFF_FFFF_FFFF
        else:
            m.int_value = int(value) & 0xFFFF_FFFF
    elif datatype is DataType.Float:
        m.float_value = float(value)
    elif datatype is DataType.Double:
        m.double_value = float(value)
    elif datatype is DataType.Boolean:
        m.boolean_value = bool(value)
    elif datatype in _STRINGS:
        m.string_value = str(value)
    elif datatype in _BYTES:
        m.bytes_value = bytes(value) if isinstance(value, bytes) else str(value).encode()
    else:
        raise SparkplugError(f"set_value({m.name})", f"datatype {datatype} is not supported")


def metric_value(m: Any, datatype: int | None = None) -> Value | None:
    """Read a Payload.Metric's value; `datatype` (from the birth when DATA omits it) restores signed ints."""
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    if kind is None:
        return None
    raw: Value = getattr(m, kind)
    dt = datatype if datatype is not None else (m.datatype if m.HasField("datatype") else None)
    if kind in ("int_value", "long_value") and dt in _INT_BITS:
        bits, signed = _INT_BITS[DataType(dt)]
        v = int(raw) & ((1 << bits) - 1)
        return v - (1 << bits) if signed and v >> (bits - 1) else v
    return raw


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    """`spBv1.0/{group}/{kind}/{node}[/{device}]`."""
    return "/".join((NAMESPACE, group, kind, node, *((device,) if device else ())))


def float32(x: float) -> float:
    """`x` as it comes back from a Float metric (hosts compare against this)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric the node declares in its birth."""

    name: str
    """Sparkplug metric name; `/` makes folders in host applications (`gas/t101_o2`)."""
    datatype: DataType
    """Sparkplug datatype; a scalar type (ints, Float, Double, Boolean, String, Text, UUID, DateTime, Bytes)."""
    initial: Value | None = None
    """Value in births until the first update; None is sent as is_null (no value yet)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise SparkplugError("MetricDef", "a metric needs a non-empty name")
        check_value(self.datatype, self.initial, f"MetricDef({self.name})")


@dataclass(slots=True)
class _Metric:
    name: str
    datatype: DataType
    alias: int
    value: Value | None
    ts_ms: int | None = None


@dataclass(slots=True)
class _Device:
    name: str
    metrics: dict[str, _Metric]
    alive: bool = True
    pending: dict[str, None] = field(default_factory=dict)
    """Names of metrics changed since the last DBIRTH/DDATA (an ordered set)."""
    birth_due: bool = False
    death_due: bool = False


def _check_id(kind: str, s: str) -> None:
    if not s or any(c in s for c in "+#/"):
        raise SparkplugError(f"SparkplugNode({kind}={s!r})", "Sparkplug ids must be non-empty without '+', '#', '/'")


class SparkplugNode:
    """A Sparkplug B edge node: births, data, deaths and Rebirth over one MQTT connection at a time."""

    def __init__(
        self,
        url: str,
        group: str,
        node: str,
        devices: Mapping[str, Sequence[MetricDef]],
        clock_utc_ms: Callable[[], int],
        *,
        node_metrics: Sequence[MetricDef] = (),
        username: str = "",
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        client_id: str = "",
        keepalive_s: int = 15,
        aliases: bool = True,
        bd_seq: int = 0,
    ) -> None:
        u = urlparse(url)
        if u.scheme not in ("mqtt", "mqtts"):
            raise SparkplugError(f"SparkplugNode(url={url!r})", "the url must start with mqtt:// or mqtts://")
        for kind, s in (("group", group), ("node", node), *(("device", d) for d in devices)):
            _check_id(kind, s)
        self.url, self.group, self.node = url, group, node
        self.clock_utc_ms = clock_utc_ms
        self.username, self.password, self.client_id = username, password, client_id or f"spb-{group}-{node}"
        self.tls = tls if tls is not None or u.scheme == "mqtt" else ssl.create_default_context()
        self.keepalive_s = keepalive_s
        self.aliases = aliases
        """True: DDATA/NDATA name metrics by alias only (bound by the birth); False: by name."""

        alias = iter(range(1, 1 << 31))
        builtin = [MetricDef(BD_SEQ, DataType.UInt64, bd_seq % 256), MetricDef(REBIRTH, DataType.Boolean, False)]
        self._node: dict[str, _Metric] = {}
        for d in (*builtin, *node_metrics):
            if d.name in self._node:
                raise SparkplugError(f"SparkplugNode(node_metrics={d.name})", "duplicate or reserved metric name")
            self._node[d.name] = _Metric(d.name, d.datatype, next(alias), d.initial)
        self._node_pending: dict[str, None] = {}
        self._devices: dict[str, _Device] = {}
        for dev, defs in devices.items():
            ms: dict[str, _Metric] = {}
            for d in defs:
                if d.name in ms:
                    raise SparkplugError(f"SparkplugNode(devices.{dev}.{d.name})", "duplicate metric name")
                ms[d.name] = _Metric(d.name, d.datatype, next(alias), d.initial)
            self._devices[dev] = _Device(dev, ms)
        self._node_aliases = {m.alias: m.name for m in self._node.values()}
        self._dirty: dict[str, None] = {}
        """Devices with pending DDATA, oldest first (so no device starves another)."""

        self._bd_next = bd_seq % 256
        self._seq_next = 0
        self._rebirth = False
        self._stopping = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._running = False
        self._stopped = asyncio.Event()
        self._said: dict[str, tuple[int, int]] = {}  # log event -> (last logged ms, suppressed since)

        # ---- state for the status page ----
        self.connected = False
        self.bd_seq = bd_seq % 256
        """bdSeq of the current (or last) connection: the one in its NBIRTH and its NDEATH will."""
        self.seq = -1
        """seq of the last message published (-1: none yet)."""
        self.births = 0
        """NBIRTH sets published (first births after each connect, plus rebirths)."""
        self.rebirth_requests = 0
        self.sent = 0
        self.coalesced = 0
        """Updates replaced by a newer value before their DDATA went out."""
        self.bad_commands = 0
        """NCMD payloads that did not decode or made no sense (logged rate-limited, never raised)."""
        self.ignored_commands = 0
        """Well-formed NCMD/DCMD writes the node does not obey (it accepts Rebirth only)."""
        self.last_error = ""

    # ---- what the daemon calls ------------------------------------------------------
    def update(self, device: str, metric: str, value: Value | None, ts_ms: int) -> None:
        """A device metric's new value (ms since epoch UTC of the fact): queues a DDATA if it changed."""
        dev = self._devices.get(device)
        m = dev.metrics.get(metric) if dev else None
        if dev is None or m is None:
            raise SparkplugError(f"update({device}, {metric})", "unknown device or metric: declare it in `devices`")
        check_value(m.datatype, value, f"update({device}, {metric})")
        if value == m.value and type(value) is type(m.value):
            return  # report by exception: hosts keep the last value until a death says otherwise
        m.value, m.ts_ms = value, ts_ms
        if not dev.alive:
            return  # its next DBIRTH carries the current value
        if metric in dev.pending:
            self.coalesced += 1
        dev.pending[metric] = None
        self._dirty[device] = None
        self._wake.set()

    def set_node_metric(self, name: str, value: Value | None, ts_ms: int | None = None) -> None:
        """A node metric's new value: queues an NDATA if it changed (bdSeq and Rebirth are the node's own)."""
        m = self._node.get(name)
        if m is None or name in (BD_SEQ, REBIRTH):
            where = f"set_node_metric({name})"
            raise SparkplugError(where, "unknown or reserved node metric: declare it in node_metrics")
        check_value(m.datatype, value, f"set_node_metric({name})")
        if value == m.value and type(value) is type(m.value):
            return
        m.value, m.ts_ms = value, ts_ms if ts_ms is not None else self.clock_utc_ms()
        if name in self._node_pending:
            self.coalesced += 1
        self._node_pending[name] = None
        self._wake.set()

    def set_device_alive(self, device: str, alive: bool) -> None:
        """False: publish DDEATH (its data is stale from now on); True again: a fresh DBIRTH."""
        dev = self._devices.get(device)
        if dev is None:
            raise SparkplugError(f"set_device_alive({device})", "unknown device: declare it in `devices`")
        if dev.alive == alive:
            return
        dev.alive = alive
        dev.birth_due, dev.death_due = alive, not alive
        dev.pending.clear()
        self._dirty.pop(device, None)
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """Counters and state for the status page (JSON-ready)."""
        return {
            "connected": self.connected,
            "group": self.group,
            "node": self.node,
            "bd_seq": self.bd_seq,
            "seq": self.seq,
            "births": self.births,
            "rebirth_requests": self.rebirth_requests,
            "sent": self.sent,
            "pending": self.pending,
            "coalesced": self.coalesced,
            "bad_commands": self.bad_commands,
            "ignored_commands": self.ignored_commands,
            "last_error": self.last_error,
        }

    @property
    def pending(self) -> int:
        """Metric changes waiting to be published."""
        return len(self._node_pending) + sum(len(d.pending) for d in self._devices.values())

    # ---- payloads --------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq = self._seq_next
        self._seq_next = (self._seq_next + 1) % 256
        return self.seq

    def _payload(self, metrics: Sequence[_Metric], birth: bool, seq: int | None, now: int) -> bytes:
        p = Payload(timestamp=now)
        if seq is not None:
            p.seq = seq
        for m in metrics:
            pm = p.metrics.add()
            if birth or not self.aliases:
                pm.name = m.name
            if birth or self.aliases:
                pm.alias = m.alias
            pm.timestamp = m.ts_ms if m.ts_ms is not None else now
            pm.datatype = int(m.datatype)
            set_value(pm, m.datatype, m.value)
        return bytes(p.SerializeToString())

    def _death(self, bd: int) -> bytes:
        """NDEATH: the bdSeq metric only, and no seq (the spec forbids one)."""
        p = Payload(timestamp=self.clock_utc_ms())
        pm = p.metrics.add(name=BD_SEQ, datatype=int(DataType.UInt64), long_value=bd)
        pm.timestamp = p.timestamp
        return bytes(p.SerializeToString())

    def _birth_messages(self) -> list[tuple[str, bytes]]:
        """NBIRTH + every live device's DBIRTH, built at one instant (pending changes are in them)."""
        now = self.clock_utc_ms()
        self._seq_next = 0
        out = [(topic(self.group, "NBIRTH", self.node), self._payload(list(self._node.values()), True, 0, now))]
        self.seq = 0
        self._seq_next = 1
        for dev in self._devices.values():
            dev.pending.clear()
            dev.birth_due = dev.death_due = False  # a new NBIRTH resets what hosts know of every device
            if dev.alive:
                out.append(self._dbirth(dev, now))
        self._node_pending.clear()
        self._dirty.clear()
        return out

    def _dbirth(self, dev: _Device, now: int) -> tuple[str, bytes]:
        body = self._payload(list(dev.metrics.values()), True, self._next_seq(), now)
        return topic(self.group, "DBIRTH", self.node, dev.name), body

    def _next_message(self) -> tuple[str, bytes] | None:
        """The next thing to publish after the births: NDATA, device deaths and births, then DDATA."""
        now = self.clock_utc_ms()
        if self._node_pending:
            ms = [self._node[n] for n in self._node_pending]
            self._node_pending.clear()
            return topic(self.group, "NDATA", self.node), self._payload(ms, False, self._next_seq(), now)
        for dev in self._devices.values():
            if dev.death_due:
                dev.death_due = False
                return topic(self.group, "DDEATH", self.node, dev.name), self._payload([], False, self._next_seq(), now)
            if dev.birth_due:
                dev.birth_due = False
                return self._dbirth(dev, now)
        while self._dirty:
            name = next(iter(self._dirty))
            del self._dirty[name]
            dev = self._devices[name]
            if dev.pending:
                ms = [dev.metrics[n] for n in dev.pending]
                dev.pending.clear()
                body = self._payload(ms, False, self._next_seq(), now)
                return topic(self.group, "DDATA", self.node, name), body
        return None

    # ---- commands from the host ----------------------------------------------------------
    def _say(self, event: str, **kw: Any) -> None:
        """Log `event` at most once per LOG_EVERY_MS, with how many were not logged since."""
        now = self.clock_utc_ms()
        last, suppressed = self._said.get(event, (None, 0))
        if last is not None and now - last < LOG_EVERY_MS:
            self._said[event] = (last, suppressed + 1)
            return
        self._said[event] = (now, 0)
        log.warning(event, node=self.node, suppressed=suppressed, **kw)

    def _on_command(self, t: str, raw: Any) -> None:
        if "/DCMD/" in t:
            self.ignored_commands += 1
            self._say("sparkplug_dcmd_ignored", topic=t, why="device writes are not accepted")
            return
        try:
            p = Payload.FromString(bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode())
        except DecodeError as exc:
            self.bad_commands += 1
            self._say("sparkplug_ncmd_bad", topic=t, error=str(exc))
            return
        if not p.metrics:
            self.bad_commands += 1
            self._say("sparkplug_ncmd_bad", topic=t, error="no metrics")
        for m in p.metrics:
            name = m.name if m.HasField("name") else self._node_aliases.get(m.alias)
            if name == REBIRTH and m.WhichOneof("value") == "boolean_value":
                if m.boolean_value:
                    self.rebirth_requests += 1
                    self._rebirth = True
                    self._wake.set()
                    log.info("sparkplug_rebirth_requested", node=self.node, bd_seq=self.bd_seq)
            elif name == REBIRTH or name is None:
                self.bad_commands += 1
                self._say("sparkplug_ncmd_bad", topic=t, error=f"{name or m.alias}: not a boolean Rebirth")
            else:
                self.ignored_commands += 1
                self._say("sparkplug_ncmd_ignored", topic=t, metric=name, why="only Rebirth is obeyed")

    # ---- the connection ----------------------------------------------------------------
    def _client(self, bd: int) -> aiomqtt.Client:
        u = urlparse(self.url)
        return aiomqtt.Client(
            hostname=u.hostname or "127.0.0.1",
            port=u.port or (8883 if u.scheme == "mqtts" else 1883),
            identifier=self.client_id,
            username=self.username or None,
            password=self.password,
            will=aiomqtt.Will(topic(self.group, "NDEATH", self.node), self._death(bd), qos=1, retain=False),
            clean_session=True,
            keepalive=self.keepalive_s,
            tls_context=self.tls,
            timeout=10,
            socket_options=NO_DELAY,
        )

    def _set_connected(self, up: bool, reason: str = "") -> None:
        if up != self.connected:
            self.connected = up
            if up:
                log.info("sparkplug_connected", url=self.url, node=self.node, bd_seq=self.bd_seq)
            else:
                log.warning("sparkplug_disconnected", url=self.url, node=self.node, reason=reason)

    async def run(self) -> None:
        """Forever, until goodbye() or cancellation: connect, birth, publish changes; reconnect with backoff."""
        self._running = True
        self._stopped.clear()
        delay = 0.2
        try:
            while not self._stopping:
                established = False
                try:
                    established = await self._session()
                except (aiomqtt.MqttError, OSError) as exc:  # OSError: TLS files, sockets outside aiomqtt's wrapping
                    self.last_error = str(exc) or type(exc).__name__
                    self._set_connected(False, self.last_error)
                if self._stopping:
                    break
                delay = 0.2 if established else min(delay * 2, 10.0)
                try:
                    async with asyncio.timeout(delay * (0.5 + random.random())):
                        await self._stop.wait()
                except TimeoutError:
                    pass
        finally:
            self._set_connected(False, "stopped")
            self._running = False
            self._stopped.set()

    async def _session(self) -> bool:
        """One connection. Raises MqttError when it drops; returns after NDEATH when stopping."""
        bd = self._bd_next
        async with self._client(bd) as client:
            self.bd_seq = self._node[BD_SEQ].value = bd
            self._node[BD_SEQ].ts_ms = self.clock_utc_ms()
            self._bd_next = (bd + 1) % 256  # only a CONNECT the broker accepted uses a bdSeq up
            self._set_connected(True)
            try:
                self._rebirth = True
                await client.subscribe(topic(self.group, "NCMD", self.node), qos=1)
                await client.subscribe(topic(self.group, "DCMD", self.node, "+"), qos=1)
                listener = asyncio.create_task(self._listen(client), name=f"sparkplug_cmd[{self.node}]")
                try:
                    await self._drain(client, listener)
                finally:
                    listener.cancel()
                    await asyncio.wait([listener])
                await self._publish_death(client)
            except asyncio.CancelledError:
                # The daemon stops by cancelling: say NDEATH now, as the clean DISCONNECT cancels the will.
                try:
                    async with asyncio.timeout(2):
                        await self._publish_death(client)
                except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
                    log.warning("sparkplug_death_failed", node=self.node, error=str(exc))
                raise
        return True

    async def _publish_death(self, client: aiomqtt.Client) -> None:
        await client.publish(topic(self.group, "NDEATH", self.node), self._death(self.bd_seq), qos=1)
        self.sent += 1
        log.info("sparkplug_death_sent", node=self.node, bd_seq=self.bd_seq)

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            async for msg in client.messages:
                self._on_command(str(msg.topic), msg.payload)
        finally:
            self._wake.set()

    async def _drain(self, client: aiomqtt.Client, listener: asyncio.Task[None]) -> None:
        """All publishing happens here, one message at a time, so seq order is wire order."""
        while not self._stopping:
            if listener.done():
                exc = listener.exception()
                raise exc if exc is not None else aiomqtt.MqttError("sparkplug: command stream ended")
            if self._rebirth:
                self._rebirth = False
                for t, body in self._birth_messages():
                    await client.publish(t, body, qos=0)
                    self.sent += 1
                self.births += 1
                continue
            msg = self._next_message()
            if msg is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await client.publish(msg[0], msg[1], qos=0)
            self.sent += 1

    async def goodbye(self) -> None:
        """Clean stop: NDEATH on the live connection, then disconnect; run() returns. No-op if not running."""
        if not self._running:
            return
        self._stopping = True
        self._stop.set()
        self._wake.set()
        try:
            async with asyncio.timeout(3):
                await self._stopped.wait()
        except TimeoutError:
            log.warning("sparkplug_goodbye_timeout", node=self.node, connected=self.connected)

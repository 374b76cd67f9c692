"""MQTT input: subscribes to sensor topics and ESPresense, emits typed events.

Decisions (documented because they touch safety):

* **A bad payload on a mapped safety signal is dropped and counted, not turned into a
  BAD reading.** A BAD reading raises a latched fault at once; one corrupt frame from a
  sensor, or from anyone with publish rights on the topic, would then stop a shift. A
  sensor that keeps sending garbage sends no good value either, so its signal goes stale
  within `stale_after_s` (<= 5 s) and the rules treat it as the worst case anyway.
* **Retained messages without their own timestamp are refused** (`retained`): a retained
  gas value may be hours old, and taking it as fresh would show "good" at start-up. With
  a timestamp, the age check decides, as for any other message.
* **A payload timestamp back-dates the reading** (`at = arrival - age`) and payloads older
  than `max_age_s`, or further ahead than that, are refused (`stale`, `future_timestamp`).
* **Clean session**: the broker keeps no backlog for us while we are away, so a reconnect
  never replays old readings with fresh arrival times. QoS 1 (the default for scalar
  mappings) guarantees delivery while connected.
* Broker loss is announced once as `DeviceStatus(device=name, up=False)`, and the
  reconnect as `up=True`; per-signal staleness stays the rules' job.
* Refused payloads are counted exactly (`rejected`, `rejected_by_topic`); the log line and
  the `Rejected` event are rate-limited per (topic, reason), carrying how many were
  suppressed in between, so a flood of garbage cannot flood the inbox or the log.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import urlsplit

import structlog

from rules.events import DeviceStatus, Event, Reading, Rejected, Sighting

from .codec import PayloadMapping, Rejection, RejectReason, check_age, decode_sample, topic_matches
from .errors import MqttConfigError
from .espresense import EspresenseCfg, decode_espresense
from .waveform import WaveformFrame, WaveformMapping, decode_waveform
from .wire import Connection, Publish, WireError

_MAX_TOPIC_KEYS: Final = 1024
"""Bound on distinct (topic, reason) counters: wildcard topics must not grow memory without end."""
_OTHER_TOPIC: Final = "(other)"
_T = TypeVar("_T")
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Files for mqtts://; all paths are PEM files."""

    ca_path: str | None = None
    """CA bundle that signed the broker's certificate; None = the system store."""
    cert_path: str | None = None
    """Client certificate for mutual TLS."""
    key_path: str | None = None
    """Private key of `cert_path` (None when the key is inside the certificate file)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential reconnect delay: `initial_s * factor**attempt`, capped, times 0.5..1."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rnd: float) -> float:
        """Delay before reconnect number `attempt` (0-based); `rnd` is uniform in [0, 1)."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        # "Equal jitter": spreads a fleet of gateways after a broker restart, never zero.
        return base * (0.5 + 0.5 * rnd)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where to connect, parsed from the configured URL."""

    host: str
    port: int
    tls: bool


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; credentials are not allowed in the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttConfigError("mqtt_in.url", f"{url!r}: use mqtt://host:port or mqtts://host:port")
    if parts.username is not None or parts.password is not None:
        # The URL is logged and shown on the status page; secrets belong in username/password.
        raise MqttConfigError("mqtt_in.url", "credentials in the URL: set username/password instead")
    if not parts.hostname:
        raise MqttConfigError("mqtt_in.url", f"{url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttConfigError("mqtt_in.url", f"{url!r}: only scheme, host and port are used")
    try:
        port = parts.port
    except ValueError as exc:
        raise MqttConfigError("mqtt_in.url", f"{url!r}: bad port") from exc
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def _tls_context(tls: TlsOptions | None) -> ssl.SSLContext:
    opts = tls or TlsOptions()
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_path)
        if opts.cert_path is not None:
            ctx.load_cert_chain(opts.cert_path, opts.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError("mqtt_in.tls", f"cannot load the TLS files: {exc}") from exc
    return ctx


def _guarded(decoder: Callable[..., _T], *args: object) -> _T | Rejection:
    """Run a decoder; an exception (a bug: decoders return Rejections) becomes a Rejection.

    The codecs are property-tested never to raise on any bytes; should one still do so,
    one crafted payload must not take the whole gateway down with it.
    """
    try:
        return decoder(*args)
    except (ValueError, TypeError, ArithmeticError, LookupError, RecursionError, MemoryError) as exc:
        _log.exception("mqtt_codec_error", decoder=getattr(decoder, "__name__", "?"))
        return Rejection(RejectReason.CODEC_ERROR, type(exc).__name__)


class MqttInput:
    """One broker connection feeding scalar readings, waveforms and ESPresense sightings.

    `run()` runs forever: it reconnects with jittered exponential backoff and never lets a
    broker or payload problem escape. Construct it once at start (it validates the
    configuration and raises `MqttConfigError`), then run it as a supervised task.

    Counters for the status page and metrics: `received` (messages in), `accepted`
    (events emitted: readings, sightings, waveform frames; one message can feed several
    signals), `rejected` (per reason) and `rejected_by_topic` (per (topic, reason)); a
    refusal is counted once per mapping that matched the message.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        emit: Callable[[Event], None],
        mappings: Sequence[PayloadMapping] = (),
        waveforms: Sequence[WaveformMapping] = (),
        espresense: EspresenseCfg | None = None,
        on_waveform: Callable[[WaveformFrame], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        tls: TlsOptions | None = None,
        username: str | None = None,
        password: str | None = None,
        name: str = "mqtt",
        backoff: Backoff = Backoff(),
        keepalive_s: int = 15,
        report_interval_s: float = 10.0,
        rng: random.Random | None = None,
        batch_max: int = 256,
    ) -> None:
        self.address = parse_url(url)
        """Host, port and TLS flag (no secrets: safe to show)."""
        if tls is not None and not self.address.tls:
            raise MqttConfigError("mqtt_in.tls", "TLS files given for a plain mqtt:// URL: use mqtts://")
        if password is not None and username is None:
            raise MqttConfigError("mqtt_in.password", "a password needs a username")
        if not client_id:
            raise MqttConfigError("mqtt_in.client_id", "must not be empty (two clients with one id kick each other)")
        signals = [m.signal for m in mappings]
        if dup := sorted({s for s in signals if signals.count(s) > 1}):
            raise MqttConfigError("mqtt_in.mappings", f"signal(s) mapped twice: {', '.join(dup)}")
        wsignals = [w.signal for w in waveforms]
        if wdup := sorted({s for s in wsignals if wsignals.count(s) > 1}):
            raise MqttConfigError("mqtt_in.waveforms", f"signal(s) mapped twice: {', '.join(wdup)}")
        if waveforms and on_waveform is None:
            raise MqttConfigError("mqtt_in.waveforms", "waveform mappings need an on_waveform callback")
        self._tls_context = _tls_context(tls) if self.address.tls else None
        self._client_id = client_id
        self._emit = emit
        self._mappings = tuple(mappings)
        # Exact topics by dict lookup; only wildcard filters are matched one by one (profiled:
        # a linear scan over hundreds of mappings per message was the pipeline's top cost).
        self._exact: dict[str, list[PayloadMapping]] = {}
        for m in self._mappings:
            if "+" not in m.topic and "#" not in m.topic:
                self._exact.setdefault(m.topic, []).append(m)
        self._wild = tuple(m for m in self._mappings if "+" in m.topic or "#" in m.topic)
        self._waveforms = tuple(waveforms)
        self._espresense = espresense
        self._on_waveform = on_waveform
        self._clock = clock
        self._wall = wall
        self._username = username
        self._password = password
        self.name = name
        """Device id used in `DeviceStatus` events and logs."""
        self._backoff = backoff
        self._keepalive_s = keepalive_s
        self._report_interval_s = report_interval_s
        self._batch_max = batch_max
        self._rng = rng or random.Random()
        self._connected = False
        self._last_report: dict[tuple[str, str], float] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()
        self._log = _log.bind(source=name)

        self.received = 0
        """Messages received."""
        self.accepted = 0
        """Events emitted (readings, sightings) plus waveform frames handed on."""
        self.rejected: Counter[str] = Counter()
        """Refused payloads per `RejectReason` value."""
        self.rejected_by_topic: Counter[tuple[str, str]] = Counter()
        """Refused payloads per (topic, reason); topics past 1024 keys count as "(other)"."""
        self.reconnects = 0
        """Successful connections after the first."""

    # -- state ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connected

    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS) pairs to subscribe to; the highest QoS wins for a shared filter."""
        wanted: dict[str, int] = {}
        for flt, qos in (
            *((m.topic, m.qos) for m in self._mappings),
            *((w.topic, w.qos) for w in self._waveforms),
            *(((self._espresense.topic_filter, self._espresense.qos),) if self._espresense else ()),
        ):
            wanted[flt] = max(qos, wanted.get(flt, 0))
        return sorted(wanted.items())

    def _set_connected(self, up: bool, reason: str = "") -> None:
        if up == self._connected:
            return
        self._connected = up
        where = f"{self.address.host}:{self.address.port}"
        if up:
            self._log.info("mqtt_connected", broker=where, tls=self.address.tls)
        else:
            self._log.warning("mqtt_disconnected", broker=where, reason=reason)
        self._emit(DeviceStatus(device=self.name, up=up, reason=reason))

    # -- the loop ---------------------------------------------------------------------

    async def _open(self) -> Connection:
        return await Connection.open(
            self.address.host,
            self.address.port,
            client_id=self._client_id,
            keepalive_s=self._keepalive_s,
            username=self._username,
            password=self._password,
            tls=self._tls_context,
            timeout_s=10.0,
        )

    async def run(self) -> None:
        """Connect, subscribe and dispatch forever; reconnect with backoff on any broker trouble."""
        attempt = 0
        ever_connected = False
        failing_logged = False
        try:
            while True:
                reason = ""
                try:
                    conn = await self._open()
                    try:
                        await self._subscribe(conn)
                        if ever_connected:
                            self.reconnects += 1
                        ever_connected = True
                        attempt = 0
                        failing_logged = False
                        self._set_connected(True)
                        while True:
                            for message in await conn.batch(self._batch_max):
                                await self._on_message(message)
                            # Bounded work per turn: the engine and the other inputs run in between.
                            await asyncio.sleep(0)
                    finally:
                        conn.close()
                except (WireError, OSError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                if self._connected:
                    self._set_connected(False, reason or "disconnected")
                elif not failing_logged:
                    # Log the first failed attempt of a streak only (state change, not per retry).
                    failing_logged = True
                    self._log.warning(
                        "mqtt_connect_failed", reason=reason, url_host=self.address.host, port=self.address.port
                    )
                delay = self._backoff.delay(attempt, self._rng.random())
                attempt += 1
                await asyncio.sleep(delay)
        finally:
            if self._connected:
                # Cancelled (shutdown): record the state; the daemon is going safe anyway.
                self._connected = False
                self._log.info("mqtt_closed")

    async def _subscribe(self, conn: Connection) -> None:
        subs = self.subscriptions()
        if not subs:
            return
        codes = await conn.subscribe(subs)
        for (flt, _qos), value in zip(subs, codes, strict=True):
            if value >= 0x80:
                # The broker refused (ACL): the signals behind it will go stale, which is safe.
                self._log.error("mqtt_subscribe_refused", topic=flt, code=value)

    # -- dispatch ---------------------------------------------------------------------

    async def _on_message(self, message: Publish) -> None:
        self.received += 1
        topic = message.topic
        payload = message.payload
        if topic is None:
            self._reject("(not utf-8)", Rejection(RejectReason.UNMAPPED, "topic is not valid UTF-8"))
            return
        matched = False
        for m in self._exact.get(topic, ()):
            matched = True
            self._scalar(m, topic, payload, bool(message.retain))
        for m in self._wild:
            if topic_matches(m.topic, topic):
                matched = True
                self._scalar(m, topic, payload, bool(message.retain))
        for w in self._waveforms:
            if topic_matches(w.topic, topic):
                matched = True
                # Parsing a 1.5 MB JSON frame takes tens of ms: keep the loop free meanwhile.
                frame = await asyncio.to_thread(_guarded, decode_waveform, w, payload, self._clock())
                if isinstance(frame, Rejection):
                    self._reject(topic, frame)
                elif self._on_waveform is not None:
                    self.accepted += 1
                    self._on_waveform(frame)
        esp = self._espresense
        if esp is not None and topic_matches(esp.topic_filter, topic):
            matched = True
            s = _guarded(decode_espresense, esp, topic, payload)
            if isinstance(s, Rejection):
                self._reject(topic, s)
            else:
                self.accepted += 1
                self._emit(Sighting(badge=s.badge, receiver=s.receiver, rssi=s.rssi, at=self._clock()))
        if not matched:
            self._reject(topic, Rejection(RejectReason.UNMAPPED, "no mapping matches"))

    def _scalar(self, m: PayloadMapping, topic: str, payload: bytes, retained: bool) -> None:
        sample = _guarded(decode_sample, m, payload)
        if isinstance(sample, Rejection):
            self._reject(topic, sample)
            return
        now = self._clock()
        at = now
        if sample.ts is not None:
            age = check_age(sample.ts, self._wall(), m.max_age_s)
            if isinstance(age, Rejection):
                self._reject(topic, age)
                return
            at = now - age
        elif retained:
            self._reject(topic, Rejection(RejectReason.RETAINED, "retained message without a timestamp"))
            return
        self.accepted += 1
        self._emit(Reading(signal=m.signal, value=sample.value, at=at))

    def _reject(self, topic: str, rej: Rejection) -> None:
        reason = rej.reason.value
        self.rejected[reason] += 1
        key = (topic, reason)
        if key not in self.rejected_by_topic and len(self.rejected_by_topic) >= _MAX_TOPIC_KEYS:
            key = (_OTHER_TOPIC, reason)
        self.rejected_by_topic[key] += 1
        now = self._clock()
        last = self._last_report.get(key)
        if last is not None and now - last < self._report_interval_s:
            self._suppressed[key] += 1
            return
        self._last_report[key] = now  # bounded like rejected_by_topic: same keys
        suppressed = self._suppressed.pop(key, 0)
        self._log.warning("mqtt_payload_rejected", topic=topic, reason=reason, detail=rej.detail, suppressed=suppressed)
        detail = rej.detail + (f" (+{suppressed} more since the last report)" if suppressed else "")
        self._emit(Rejected(source=f"mqtt:{topic}", reason=reason, detail=detail))

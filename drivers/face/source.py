"""Face events in: an HTTP endpoint (POST /face/events) and an MQTT subscriber.

Both feed one `FaceGate`, which holds the one replay state: an event accepted over HTTP
cannot be replayed over MQTT. The gate turns each payload into a `FaceMatch` or a
`Rejected` for the engine, counts verdicts per reason, and logs rejections rate-limited
(a flood of garbage is counted, not logged line by line). Nothing a peer sends can raise
out of here: bad input is a rejection, a lost broker is a `FaceLinkError`.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog
from aiohttp import http_exceptions, web, web_protocol

from drivers.face.codec import FaceVerifier, Rejection, RejectReason
from drivers.face.errors import FaceLinkError, SeqStateError
from drivers.face.keys import SeqStore
from rules.events import FaceMatch, Rejected

log = structlog.get_logger("drivers.face")

FaceEvent = FaceMatch | Rejected
Emit = Callable[[FaceEvent], Awaitable[None] | None]
"""Where events go (the daemon's inbox); may be a plain function or a coroutine function."""

HTTP_STATUS: Mapping[RejectReason, int] = {
    RejectReason.MALFORMED: 400,
    RejectReason.OVERSIZE: 413,
    RejectReason.UNKNOWN_TERMINAL: 401,
    RejectReason.BAD_SIGNATURE: 401,
    RejectReason.REPLAYED_SEQUENCE: 409,
    RejectReason.STALE_TIME: 422,
    RejectReason.WRONG_VERIFY_MODE: 422,
    RejectReason.OLD_CANON: 400,
    RejectReason.UNKNOWN_CANON: 400,
}
"""HTTP status per rejection reason; an accepted event gets 202."""


class Clock(Protocol):
    """Both clocks the verifier needs, injectable for tests."""

    def now_utc(self) -> datetime: ...
    def now_mono(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def now_utc(self) -> datetime:
        return datetime.now(UTC)

    def now_mono(self) -> float:
        return time.monotonic()


class FaceGate:
    """The one place face payloads are judged, whatever transport brought them."""

    def __init__(
        self,
        verifier: FaceVerifier,
        emit: Emit,
        clock: Clock | None = None,
        store: SeqStore | None = None,
        log_every_s: float = 10.0,
    ) -> None:
        """`store`, if given, is saved after every change of the replay state."""
        self._verifier = verifier
        self._emit = emit
        self._clock: Clock = clock or SystemClock()
        self._store = store
        self._save_lock = asyncio.Lock()
        self._save_failing = False
        self._log_every_s = log_every_s
        self._last_logged: dict[RejectReason, float] = {}
        self._suppressed: dict[RejectReason, int] = {}
        self._counts: dict[str, int] = {"accepted": 0} | {r.value: 0 for r in RejectReason}

    @property
    def verifier(self) -> FaceVerifier:
        return self._verifier

    @property
    def max_bytes(self) -> int:
        return self._verifier.cfg.max_bytes

    @property
    def last_seq(self) -> Mapping[str, int]:
        """Replay state to persist (see `SeqStore`)."""
        return self._verifier.last_seq

    @property
    def counts(self) -> Mapping[str, int]:
        """Verdicts so far: "accepted" and one entry per `RejectReason` value (all present, from 0)."""
        return dict(self._counts)

    async def submit(self, raw: bytes, remote: str) -> FaceMatch | Rejection:
        """Judge one payload from `remote` (e.g. "http:10.0.3.7", "mqtt:face/ft-1/events")."""
        before = self._verifier.last_seq
        self._verifier, verdict = self._verifier.verify(raw, self._clock.now_utc(), self._clock.now_mono())
        if isinstance(verdict, FaceMatch):
            self._counts["accepted"] += 1
            log.debug("face_accepted", terminal=verdict.terminal, person=verdict.person, seq=verdict.seq)
            await self._deliver(verdict)
        else:
            await self.refuse(verdict, remote)
        if self._store is not None and self._verifier.last_seq is not before:
            await self._save()
        return verdict

    async def refuse(self, rejection: Rejection, remote: str) -> None:
        """Count, log (rate-limited) and emit a rejection decided here or by a transport."""
        self._counts[rejection.reason.value] += 1
        self._log_rejection(rejection, remote)
        await self._deliver(rejection.to_event(remote))

    async def _deliver(self, ev: FaceEvent) -> None:
        result = self._emit(ev)
        if inspect.isawaitable(result):
            await result

    def _log_rejection(self, rej: Rejection, remote: str) -> None:
        now = self._clock.now_mono()
        last = self._last_logged.get(rej.reason)
        if last is not None and now - last < self._log_every_s:
            self._suppressed[rej.reason] = self._suppressed.get(rej.reason, 0) + 1
            return
        self._last_logged[rej.reason] = now
        log.warning(
            "face_event_rejected",
            reason=rej.reason.value,
            detail=rej.detail,
            terminal=rej.terminal,
            remote=remote,
            suppressed=self._suppressed.pop(rej.reason, 0),
        )

    async def _save(self) -> None:
        store = self._store
        if store is None:
            return
        async with self._save_lock:
            # Read the state inside the lock: the last save to finish writes the newest state.
            state = dict(self._verifier.last_seq)
            try:
                await asyncio.to_thread(store.save, state)
            except SeqStateError as exc:
                # The replay window after a lost state is bounded by the skew; keep serving.
                if not self._save_failing:
                    log.error("face_seq_save_failed", path=str(exc.path), problem=exc.problem)
                self._save_failing = True
                return
            if self._save_failing:
                log.info("face_seq_save_recovered", path=str(store.path))
            self._save_failing = False


# ---------------------------------------------------------------- HTTP


def _verdict_response(verdict: FaceMatch | Rejection) -> web.Response:
    if isinstance(verdict, FaceMatch):
        return web.json_response({"accepted": True, "terminal": verdict.terminal, "seq": verdict.seq}, status=202)
    return web.json_response(
        {"accepted": False, "reason": verdict.reason.value, "detail": verdict.detail},
        status=HTTP_STATUS[verdict.reason],
    )


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it is longer than `limit` (stops reading there)."""
    buf = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(buf))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            return None


def face_routes(gate: FaceGate, path: str = "/face/events", read_timeout_s: float = 5.0) -> list[web.RouteDef]:
    """Routes to add to an aiohttp Application (the daemon's status-page app hosts them).

    POST `path` answers 202 when accepted; 400/401/409/413/422 with
    ``{"accepted": false, "reason": ..., "detail": ...}`` when refused.
    """

    async def post_event(request: web.Request) -> web.Response:
        remote = f"http:{request.remote or 'unknown'}"
        limit = gate.max_bytes
        if request.content_length is not None and request.content_length > limit:
            rej = Rejection(RejectReason.OVERSIZE, f"Content-Length {request.content_length} > {limit}")
            await gate.refuse(rej, remote)
            return _verdict_response(rej)
        try:
            async with asyncio.timeout(read_timeout_s):
                body = await _read_bounded(request, limit)
        except TimeoutError:
            rej = Rejection(RejectReason.MALFORMED, f"body not received within {read_timeout_s:g} s")
            await gate.refuse(rej, remote)
            return _verdict_response(rej)
        except (web_protocol.RequestPayloadError, http_exceptions.HttpProcessingError) as exc:
            # A body that cannot be decoded (bad Content-Encoding, a broken chunked transfer): the
            # sender's fault, a 400 like any malformed event, never a 500 (found by the API fuzzer).
            rej = Rejection(RejectReason.MALFORMED, f"body cannot be decoded: {exc}")
            await gate.refuse(rej, remote)
            return _verdict_response(rej)
        if body is None:
            rej = Rejection(RejectReason.OVERSIZE, f"body longer than {limit} bytes")
            await gate.refuse(rej, remote)
            return _verdict_response(rej)
        return _verdict_response(await gate.submit(body, remote))

    return [web.post(path, post_event)]


class FaceHttpServer:
    """The endpoint on its own port (tests, or a plant that keeps it off the status page)."""

    def __init__(self, gate: FaceGate, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gate = gate
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        app = web.Application(client_max_size=self.gate.max_bytes + 1)
        app.add_routes(face_routes(self.gate))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise FaceLinkError(f"http://{self.host}:{self.port}", f"cannot listen ({exc.strerror})") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("face_http_listening", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        """Serve until cancelled (a supervisor task)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


# ---------------------------------------------------------------- MQTT


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """mqtt://[user[:password]@]host[:port] or mqtts://... (TLS with the system CAs)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"broker url {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker url {url!r}: bad port") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, tls, user, password)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"  # never the password


class FaceMqttSource:
    """Subscribes to the terminals' topics and feeds every payload through the gate."""

    def __init__(
        self,
        gate: FaceGate,
        url: str,
        topics: Iterable[str] = ("face/+/events",),
        client_id: str | None = None,
        qos: int = 1,
        timeout_s: float = 10.0,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`username`/`password`/`tls_context` override what the URL says (the gateway passes its broker's)."""
        self.gate = gate
        self.broker = BrokerUrl.parse(url)
        self.username = username
        self.password = password
        self._tls_context = tls_context
        self.topics = tuple(topics)
        if not self.topics:
            raise ValueError("face mqtt source: at least one topic is needed")
        self.client_id = client_id or f"face-{uuid.uuid4().hex[:12]}"
        self.qos = qos
        self.timeout_s = timeout_s
        self.subscribed = asyncio.Event()
        """Set while connected and subscribed (status page; tests wait on it)."""

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.username or self.broker.username,
            password=self.password if self.password is not None else self.broker.password,
            identifier=self.client_id,
            timeout=self.timeout_s,
            tls_context=self._tls_context or (ssl.create_default_context() if self.broker.tls else None),
        )

    async def run(self) -> None:
        """Until cancelled; raises FaceLinkError when the broker is lost (supervisor restarts)."""
        try:
            async with self._client() as client:
                for topic in self.topics:
                    await client.subscribe(topic, qos=self.qos)
                self.subscribed.set()
                log.info("face_mqtt_subscribed", broker=str(self.broker), topics=list(self.topics))
                async for message in client.messages:
                    payload = message.payload
                    raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
                    await self.gate.submit(raw, f"mqtt:{message.topic.value}")
                raise FaceLinkError(str(self.broker), "message stream ended")
        except aiomqtt.MqttError as exc:
            raise FaceLinkError(str(self.broker), f"MQTT link lost ({exc})") from exc
        finally:
            if self.subscribed.is_set():
                log.info("face_mqtt_disconnected", broker=str(self.broker))
            self.subscribed.clear()

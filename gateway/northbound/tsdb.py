"""Northbound time series: raw readings as InfluxDB line protocol, batched, to InfluxDB 2.x or VictoriaMetrics.

Telemetry, not safety data. The writer keeps a bounded buffer while the store is away;
when it is full the OLDEST points are dropped and counted (`dropped`). While a batch is in
flight its points still count against `max_buffer`; if they are the oldest they are dropped
only if that write then fails (so memory is at most max_buffer + one batch). Nothing that
protects a person reads from or waits on this module: alarms, interlock decisions and
hazards go to MQTT (QoS 1) and the ledger outbox, never only here.

Schema (one line per reading; reads as ``gas_o2{signal="cs1-o2",zone="cs-1",...}`` in
VictoriaMetrics, which names a series ``{measurement}_{field}``):

- measurement: the quantity's family: ``gas`` for o2/lel/h2s/co, ``condition`` for
  temperature/vibration/current, ``reading`` for anything else;
- field: the quantity name (``o2``, ``lel``, ``temperature`` ...), the value in the
  signal's configured unit; so InfluxDB shows measurement ``gas``, field ``o2``;
- tags: ``signal``, ``zone``, ``unit``, ``quality`` (good/bad) and always ``site`` and
  ``gateway`` (the writer's own values win over a caller's tags of the same name);
- time: nanoseconds since the epoch (UTC), from the reading's monotonic time (`stamp`).

A BAD reading carries NaN, which line protocol cannot express: it is not written (a gap
in the series; counted in `nonfinite`). A BAD reading with a finite value (over-range)
is written with ``quality=bad``. String fields are accepted for InfluxDB, but
VictoriaMetrics stores them as 0: the reading schema uses none.

Escaping (built here, not with influxdb_client.Point, for speed): measurement escapes
comma and space; tag keys, tag values and field keys escape comma, equals and space;
string field values escape ``"`` and backslash. Backslashes in names are doubled:
VictoriaMetrics reads ``\\\\`` back as one (tested); InfluxDB 2.x may keep both (not
testable here), but a trailing backslash can never swallow the next separator. Newline,
CR and tab cannot travel: they become the two characters ``\\n``, ``\\r``, ``\\t``. Empty
tag keys or values are left out (line protocol forbids them).

Delivery is at-least-once per batch: a batch cancelled or timed out mid-request goes back
to the buffer and may be written twice with the same series and timestamp (InfluxDB
overwrites it; VictoriaMetrics collapses it only when run with -dedup.minScrapeInterval).

`add()` must be called from the event loop's thread (it is not thread-safe).
"""

from __future__ import annotations

import asyncio
import math
import numbers
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.rest import ApiException

from gateway.core.clock import Clock

if TYPE_CHECKING:
    from gateway.config import Tsdb

__all__ = [
    "FAMILIES",
    "FieldValue",
    "PointError",
    "TsPoint",
    "TsdbStatus",
    "TsdbWriter",
    "encode_line",
    "reading_point",
]

log = structlog.get_logger("tsdb")

FieldValue = float | int | bool | str

FAMILIES: Mapping[str, str] = {
    "o2": "gas",
    "lel": "gas",
    "h2s": "gas",
    "co": "gas",
    "temperature": "condition",
    "vibration": "condition",
    "current": "condition",
}
"""Measurement of each quantity; a quantity not listed goes to measurement ``reading``."""

_ESC_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESC_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESC_STRING = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})
_INT64 = (-(2**63), 2**63 - 1)
# Statuses that will not get better by sending the same bytes again: the batch is dropped and counted.
_REJECTED = frozenset({400, 422})
_HEADS_MAX = 4096


class PointError(ValueError):
    """A point line protocol cannot carry (`encode_line` raises it; `TsdbWriter.add` counts it in `rejected`)."""

    def __init__(self, reason: str, nonfinite: int = 0) -> None:
        super().__init__(reason)
        self.nonfinite = nonfinite
        """NaN/inf values seen before giving up."""


@dataclass(frozen=True, slots=True)
class TsPoint:
    """One point ready for `TsdbWriter.add_point`."""

    measurement: str
    tags: Mapping[str, str]
    """Tag key -> value; site and gateway are added by the writer."""
    fields: Mapping[str, FieldValue]
    ts_ns: int
    """Nanoseconds since the Unix epoch (UTC)."""


@dataclass(frozen=True, slots=True)
class TsdbStatus:
    """A snapshot for the status page."""

    url: str
    connected: bool | None
    """None until the first write attempt; then whether the last attempt succeeded."""
    last_error: str
    """Why the last failed write failed (kept after recovery, for the record)."""
    last_ok_at: float | None
    """Monotonic time of the last successful write."""
    written: int
    """Points the store accepted."""
    dropped: int
    """Points dropped because the buffer was full (oldest first), added after close(), or unsent at close()."""
    rejected: int
    """Points never buffered (no finite field, bad type or time) or refused by the store (HTTP 400/422)."""
    nonfinite: int
    """NaN/inf field values left out (line protocol cannot carry them)."""
    buffered: int
    """Points waiting, including the batch in flight."""


def reading_point(signal: str, quantity: str, unit: str, zone: str, value: float, quality: str, ts_ns: int) -> TsPoint:
    """Map a gateway reading to the schema in the module docstring (quality: a `Quality` or its value)."""
    return TsPoint(
        FAMILIES.get(quantity, "reading"),
        {"signal": signal, "zone": zone, "unit": unit, "quality": str(quality)},
        {quantity: value},
        ts_ns,
    )


def encode_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ns: int,
    suffix: str = "",
    heads: dict[tuple[object, ...], str] | None = None,
) -> tuple[str, int]:
    """One line of line protocol and the number of non-finite values left out.

    `suffix` is already-escaped extra tags (",site=a,gateway=b"). `heads` caches the escaped
    "measurement,tags" part per tag set (a signal's tags repeat on every reading: this halves
    the cost). Raises PointError when nothing can be written.
    """
    if not measurement:
        raise PointError("empty measurement")
    if type(ts_ns) is not int:
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int | float) or not math.isfinite(ts_ns):
            raise PointError(f"timestamp {ts_ns!r} is not an integer of nanoseconds")
        ts_ns = int(ts_ns)
    ck = (measurement, *tags.items())
    head = heads.get(ck) if heads is not None else None
    if head is None:
        head = _head(measurement, tags) + suffix
        if heads is not None:
            if len(heads) >= _HEADS_MAX:  # bounded: a caller inventing tag values cannot grow it forever
                heads.clear()
            heads[ck] = head
    out: list[str] = []
    nonfinite = 0
    for fk, fv in fields.items():
        if not fk:
            continue
        if type(fv) is float:
            if fv - fv != 0.0:  # NaN and +/-inf (inf - inf is NaN); cheaper than math.isfinite here
                nonfinite += 1
                continue
            text = repr(fv)
        elif type(fv) is bool:
            text = "true" if fv else "false"
        elif type(fv) is int:
            text = f"{fv}i" if _INT64[0] <= fv <= _INT64[1] else repr(float(fv))
        elif type(fv) is str:
            text = f'"{fv.translate(_ESC_STRING)}"'
        elif isinstance(fv, numbers.Integral):  # numpy integers
            text = f"{int(fv)}i"
        elif isinstance(fv, numbers.Real):  # numpy floats
            if not math.isfinite(fv):
                nonfinite += 1
                continue
            text = repr(float(fv))
        else:
            raise PointError(f"field {fk!r}: {type(fv).__name__} is not float, int, bool or str")
        out.append(f"{fk.translate(_ESC_KEY)}={text}")
    if not out:
        raise PointError("no finite field value" if nonfinite else "no fields", nonfinite)
    return f"{head} {','.join(out)} {ts_ns}", nonfinite


def _head(measurement: str, tags: Mapping[str, str]) -> str:
    parts = [measurement.translate(_ESC_MEASUREMENT)]
    for k, v in tags.items():
        if k and v and k not in ("site", "gateway"):
            parts.append(f"{k.translate(_ESC_KEY)}={str(v).translate(_ESC_KEY)}")
    return ",".join(parts)


class _Outcome(Enum):
    OK = "ok"
    RETRY = "retry"
    REJECT = "reject"
    TOO_LARGE = "too_large"


class TsdbWriter:
    """Buffers points and writes them in batches with influxdb-client's async API.

    ``add()`` from the engine loop; ``run()`` as one supervised task; ``close()`` at shutdown.
    """

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str | None,
        *,
        site: str,
        gateway: str,
        clock: Clock,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_buffer: int = 200_000,
        timeout_s: float = 5.0,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError(f"tsdb: need 1 <= batch_size ({batch_size}) <= max_buffer ({max_buffer})")
        if flush_interval_s <= 0 or timeout_s <= 0 or not 0 < retry_min_s <= retry_max_s:
            raise ValueError("tsdb: flush_interval_s, timeout_s and 0 < retry_min_s <= retry_max_s must be positive")
        self.url = url
        self.org = org
        self.bucket = bucket
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._token = token
        self._suffix = f",site={site.translate(_ESC_KEY)},gateway={gateway.translate(_ESC_KEY)}"
        self._queue: deque[str] = deque()
        self._heads: dict[tuple[object, ...], str] = {}
        self._inflight = 0
        self._owed = 0
        self._batch = batch_size  # shrinks on HTTP 413
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None
        self._closed = False
        self._failures = 0
        self._retry_after = 0.0
        self._overflowing = False
        self._offset_ns = 0
        self._offset_at = -math.inf
        self.connected: bool | None = None
        self.last_error = ""
        self.last_ok_at: float | None = None
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.nonfinite = 0
        self._log = log.bind(url=url, bucket=bucket)

    @classmethod
    def from_config(
        cls, cfg: Tsdb, *, site: str, gateway: str, clock: Clock, base: Path = Path("."), **tuning: Any
    ) -> TsdbWriter:
        """Build from the `[tsdb]` section; the token file is read here (relative paths from `base`).

        `tuning`: batch_size, flush_interval_s, max_buffer, timeout_s, retry_min_s, retry_max_s.
        """
        from gateway.config.loader import read_secret

        token = read_secret(base, cfg.token_file)
        return cls(cfg.url, cfg.org, cfg.bucket, token, site=site, gateway=gateway, clock=clock, **tuning)

    # ---- producer side (engine loop) ----

    @property
    def buffered(self) -> int:
        """Points waiting, the batch in flight included."""
        return len(self._queue) + self._inflight

    def stamp(self, at: float) -> int:
        """UTC nanoseconds of the monotonic time `at` (the wall-clock offset is re-read once a second)."""
        now = self.clock.monotonic()
        if now - self._offset_at >= 1.0:
            self._offset_ns = round(self.clock.utc().timestamp() * 1e9 - now * 1e9)
            self._offset_at = now
        return self._offset_ns + round(at * 1e9)

    def add(self, measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int) -> None:
        """Queue one point: O(1), never blocks, never raises (bad points are counted in `rejected`)."""
        try:
            line, nonfinite = encode_line(measurement, tags, fields, ts_ns, self._suffix, self._heads)
        except Exception as exc:  # telemetry must never break the engine loop that calls this
            self.nonfinite += exc.nonfinite if isinstance(exc, PointError) else 0
            self.rejected += 1
            if self.rejected == 1:
                self._log.warning("tsdb_point_rejected", reason=str(exc), measurement=str(measurement)[:64])
            return
        self.nonfinite += nonfinite
        if self._closed:
            self.dropped += 1
            return
        q = self._queue
        if len(q) + self._inflight - self._owed >= self.max_buffer:
            if not self._overflowing:
                self._overflowing = True
                self._log.warning("tsdb_buffer_full", max_buffer=self.max_buffer, dropping="oldest")
            if self._owed < self._inflight:
                # The oldest points are in the batch being sent: they are forfeit if that attempt fails
                # (_restore drops them then), kept if it succeeds. Memory: max_buffer + one batch.
                self._owed += 1
            else:
                q.popleft()
                self.dropped += 1
        q.append(line)
        if len(q) >= self._batch:
            self._wake.set()

    def add_point(self, p: TsPoint) -> None:
        """`add` for a `TsPoint` (e.g. from `reading_point`)."""
        self.add(p.measurement, p.tags, p.fields, p.ts_ns)

    def status(self) -> TsdbStatus:
        return TsdbStatus(
            url=self.url,
            connected=self.connected,
            last_error=self.last_error,
            last_ok_at=self.last_ok_at,
            written=self.written,
            dropped=self.dropped,
            rejected=self.rejected,
            nonfinite=self.nonfinite,
            buffered=self.buffered,
        )

    # ---- consumer side (one task) ----

    async def run(self) -> None:
        """Flush batches until close() or cancellation; retries with jittered backoff while the store is down."""
        ok = True
        while not self._closed:
            if ok and len(self._queue) < self._batch:
                try:
                    async with asyncio.timeout(self.flush_interval_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._closed:
                break
            ok = await self._drain()
            if not ok:
                await self._backoff()

    async def flush(self) -> bool:
        """Write everything buffered now; False if the store failed (the points stay buffered)."""
        return await self._drain()

    async def close(self, timeout_s: float | None = None) -> None:
        """Stop run(), flush what can be written within `timeout_s` (default: the write timeout), free the client.

        One attempt per batch, no retries: points still queued afterwards are counted in `dropped`.
        """
        self._closed = True
        self._stop.set()
        self._wake.set()
        try:
            async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
                await self._drain()
        except TimeoutError:
            pass
        finally:
            if self._queue:
                self._log.warning("tsdb_unflushed", points=len(self._queue), last_error=self.last_error)
                self.dropped += len(self._queue)
                self._queue.clear()
            if self._client is not None:
                client, self._client, self._write_api = self._client, None, None
                await client.close()  # type: ignore[no-untyped-call]

    async def _drain(self) -> bool:
        # Bounded: the batches present now; later points wait for the next round.
        rounds = -(-len(self._queue) // self._batch) + 1
        for _ in range(rounds):
            if not self._queue:
                return True
            async with self._send_lock:
                if not self._queue:
                    return True
                if not await self._send_one():
                    return False
        return True

    async def _send_one(self) -> bool:
        q = self._queue
        batch = [q.popleft() for _ in range(min(self._batch, len(q)))]
        self._inflight = len(batch)
        delivered = False
        try:
            outcome, detail, retry_after = await self._post("\n".join(batch))
            if outcome is _Outcome.OK:
                delivered = True
                self._on_ok(len(batch))
                return True
            if outcome is _Outcome.TOO_LARGE and len(batch) == 1:
                outcome = _Outcome.REJECT  # one line the store will never take
            if outcome is _Outcome.REJECT:
                delivered = True  # never resent: the same bytes get the same answer
                self.rejected += len(batch)
                self.last_error = detail
                self._log.error("tsdb_batch_rejected", points=len(batch), error=detail)
                return True
            if outcome is _Outcome.TOO_LARGE:
                self._batch = max(1, len(batch) // 2)
                self._log.warning("tsdb_batch_shrunk", batch_size=self._batch, error=detail)
                return True
            self._on_error(detail, retry_after)
            return False
        finally:
            self._inflight = 0
            self._owed = 0
            if not delivered:
                self._restore(batch)

    def _restore(self, batch: list[str]) -> None:
        """Put an unsent batch back at the head; if new points filled the room meanwhile, its oldest go."""
        excess = len(self._queue) + len(batch) - self.max_buffer
        if excess > 0:
            self.dropped += excess
            batch = batch[excess:]
        self._queue.extendleft(reversed(batch))

    async def _post(self, body: str) -> tuple[_Outcome, str, float]:
        """Translate influxdb-client/aiohttp outcomes into (outcome, detail, retry_after_s)."""
        try:
            if self._client is None or self._write_api is None:
                # Built here, not in __init__: the client's aiohttp session needs the running loop.
                self._client = InfluxDBClientAsync(
                    url=self.url, token=self._token or "", org=self.org, timeout=int(self.timeout_s * 1000) + 1000
                )
                self._write_api = self._client.write_api()
            async with asyncio.timeout(self.timeout_s):
                ok = await self._write_api.write(bucket=self.bucket, org=self.org, record=body)
        except TimeoutError:
            return _Outcome.RETRY, f"timeout after {self.timeout_s} s", 0.0
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = f"HTTP {status}: {str(exc.body or exc.reason or '')[:200]}"
            if status in _REJECTED:
                return _Outcome.REJECT, detail, 0.0
            if status == 413:
                return _Outcome.TOO_LARGE, detail, 0.0
            return _Outcome.RETRY, detail, _retry_after(exc.headers)
        except (InfluxDBError, aiohttp.ClientError, OSError, ValueError) as exc:
            return _Outcome.RETRY, f"{type(exc).__name__}: {exc}", 0.0
        if not ok:
            return _Outcome.RETRY, "store answered without 201/204", 0.0
        return _Outcome.OK, "", 0.0

    def _on_ok(self, n: int) -> None:
        self.written += n
        self.last_ok_at = self.clock.monotonic()
        self._failures = 0
        self._retry_after = 0.0
        self._overflowing = False
        if self.connected is not True:
            self.connected = True
            self._log.info("tsdb_connected", buffered=self.buffered)

    def _on_error(self, detail: str, retry_after: float) -> None:
        self.last_error = detail
        self._failures += 1
        self._retry_after = retry_after
        if self.connected is not False:
            self.connected = False
            self._log.warning("tsdb_down", error=detail, buffered=self.buffered)

    async def _backoff(self) -> None:
        delay = min(self.retry_max_s, self.retry_min_s * 2 ** min(self._failures - 1, 16))
        delay = max(delay * (0.5 + random.random() / 2), min(self._retry_after, self.retry_max_s))
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass


def _retry_after(headers: object) -> float:
    try:
        value = headers.get("Retry-After") if headers is not None else None  # type: ignore[attr-defined]
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError, AttributeError):
        return 0.0

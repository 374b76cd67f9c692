"""gateway.northbound.tsdb against a real VictoriaMetrics (and a scripted aiohttp server for HTTP statuses)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import Tsdb
from gateway.core.clock import SystemClock
from gateway.northbound.tsdb import PointError, TsdbWriter, encode_line, reading_point
from rules.events import Quality
from tests.support.clock import FakeClock
from tests.support.procs import wait_for
from tests.support.victoria import Victoria, victoria

SITE, GW = "site 1", "gw-1"
BASE = {"site": SITE, "gateway": GW}
MS = 1_000_000


@pytest.fixture
def vm() -> Iterator[Victoria]:
    with victoria() as v:
        yield v


@pytest.fixture
async def make_writer() -> AsyncIterator[Callable[..., TsdbWriter]]:
    writers: list[TsdbWriter] = []

    def make(url: str, **kw: Any) -> TsdbWriter:
        # Short retry and flush periods keep the tests fast; the defaults are for a plant network.
        opts: dict[str, Any] = {"retry_min_s": 0.05, "retry_max_s": 0.2, "flush_interval_s": 0.05, "timeout_s": 2.0}
        w = TsdbWriter(url, "plant", "edge", "t0ken", site=SITE, gateway=GW, clock=SystemClock(), **(opts | kw))
        writers.append(w)
        return w

    yield make
    for w in writers:
        await w.close(timeout_s=2.0)


@asynccontextmanager
async def running(w: TsdbWriter) -> AsyncIterator[None]:
    task = asyncio.create_task(w.run(), name="tsdb[test]")
    try:
        yield
    finally:
        await w.close(timeout_s=3.0)
        async with asyncio.timeout(5):
            await task  # run() returns once close() is called


def t0() -> int:
    """Now, whole milliseconds (VictoriaMetrics keeps ms), in ns."""
    return time.time_ns() // MS * MS


def o2(i: int, ts: int, value: float | None = None) -> Any:
    return reading_point("cs1-o2", "o2", "%vol", "cs-1", float(i) if value is None else value, Quality.GOOD, ts)


async def export(
    vm: Victoria, match: str, samples: int
) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]]:
    """{(name, labels): [(ts_ms, value), ...]} of every series matching `match`, once `samples` are visible.

    VictoriaMetrics acknowledges a write before the rows are searchable (even after force_flush), so wait.
    """
    rows: list[dict[str, Any]] = []

    async def visible() -> bool:
        rows[:] = await asyncio.to_thread(vm.export, match)
        return sum(len(r["values"]) for r in rows) >= samples

    await wait_for(visible, timeout=10, interval=0.1, what=f"{samples} samples of {match} visible")
    out = {}
    for r in rows:
        labels = dict(r["metric"])
        name = labels.pop("__name__")
        out[(name, frozenset(labels.items()))] = sorted(zip(r["timestamps"], r["values"], strict=True))
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset((BASE | labels).items())


# ---- pure: encoding ----

SUFFIX = ",site=s,gateway=g"


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "line"),
    [
        ("gas", {"signal": "o2-1"}, {"o2": 20.9}, "gas,signal=o2-1,site=s,gateway=g o2=20.9 7"),
        ("m", {}, {"i": 5, "b": True, "f": 1e-05}, "m,site=s,gateway=g i=5i,b=true,f=1e-05 7"),
        ("my m,x=1", {"k y": "a b,c=d"}, {"f=k": 1.0}, r"my\ m\,x=1,k\ y=a\ b\,c\=d,site=s,gateway=g f\=k=1.0 7"),
        ("m", {"p": "back\\slash"}, {"v": 1.0}, "m,p=back\\\\slash,site=s,gateway=g v=1.0 7"),
        ("m", {"p": "l1\nl2\t"}, {"v": 1.0}, r"m,p=l1\nl2\t,site=s,gateway=g v=1.0 7"),
        ("m", {}, {"s": 'say "hi" \\ ok'}, r'm,site=s,gateway=g s="say \"hi\" \\ ok" 7'),
        # Empty tag values are illegal in line protocol; the writer's site/gateway win over the caller's.
        ("m", {"empty": "", "site": "other", "gateway": "x"}, {"v": -0.5}, "m,site=s,gateway=g v=-0.5 7"),
        # A NaN next to a finite field: the finite one goes, the NaN is counted.
        ("m", {}, {"a": math.nan, "b": 2}, "m,site=s,gateway=g b=2i 7"),
        ("m", {}, {"big": 2**70}, f"m,site=s,gateway=g big={float(2**70)!r} 7"),
    ],
)
def test_encode_line(measurement: str, tags: dict[str, str], fields: dict[str, Any], line: str) -> None:
    got, nonfinite = encode_line(measurement, tags, fields, 7, SUFFIX)
    assert got == line
    assert nonfinite == sum(1 for v in fields.values() if isinstance(v, float) and not math.isfinite(v))


@pytest.mark.parametrize(
    ("measurement", "fields", "ts", "nonfinite"),
    [
        ("m", {"v": math.nan, "w": math.inf}, 1, 2),
        ("m", {"v": -math.inf}, 1, 1),
        ("m", {}, 1, 0),
        ("", {"v": 1.0}, 1, 0),
        ("m", {"v": object()}, 1, 0),
        ("m", {"v": 1.0}, "soon", 0),
        ("m", {"v": 1.0}, math.nan, 0),
    ],
)
def test_encode_line_refuses(measurement: str, fields: dict[str, Any], ts: Any, nonfinite: int) -> None:
    with pytest.raises(PointError) as err:
        encode_line(measurement, {}, fields, ts)
    assert err.value.nonfinite == nonfinite


def test_reading_point_schema() -> None:
    p = reading_point("m1-vib", "vibration", "mm/s", "pump-1", 3.5, Quality.BAD, 42)
    assert (p.measurement, dict(p.tags), dict(p.fields), p.ts_ns) == (
        "condition",
        {"signal": "m1-vib", "zone": "pump-1", "unit": "mm/s", "quality": "bad"},
        {"vibration": 3.5},
        42,
    )
    assert reading_point("x", "h2s", "ppm", "z", 1.0, "good", 1).measurement == "gas"
    assert reading_point("x", "humidity", "%", "z", 1.0, "good", 1).measurement == "reading"


def test_stamp_maps_monotonic_to_utc_ns() -> None:
    clock = FakeClock(mono=1000.0, utc=datetime(2030, 1, 1, tzinfo=UTC))
    w = TsdbWriter("http://127.0.0.1:9", "o", "b", None, site="s", gateway="g", clock=clock)
    wall_ns = int(clock.utc().timestamp()) * 1_000_000_000
    assert w.stamp(1000.0) == wall_ns
    assert w.stamp(999.25) == wall_ns - 750_000_000


def test_add_never_raises_and_counts() -> None:
    w = TsdbWriter("http://127.0.0.1:9", "o", "b", None, site="s", gateway="g", clock=SystemClock())
    w.add("m", None, {"v": 1.0}, 1)  # type: ignore[arg-type]
    w.add("m", {}, {"v": object()}, 1)  # type: ignore[dict-item]
    w.add("", {}, {"v": 1.0}, 1)
    w.add("m", {}, {"v": 1.0}, "soon")  # type: ignore[arg-type]
    w.add("m", {}, {}, 1)
    w.add("m", {}, {"v": math.nan}, 1)
    assert (w.rejected, w.nonfinite, w.buffered) == (6, 1, 0)
    w.add("m", {}, {"v": 1.0}, 1)
    assert (w.rejected, w.buffered) == (6, 1)


def test_from_config_reads_the_token_file(tmp_path: Path) -> None:
    (tmp_path / "tsdb.token").write_text("s3cret\n")
    cfg = Tsdb(url="http://127.0.0.1:9", org="o", bucket="b", token_file=Path("tsdb.token"))
    w = TsdbWriter.from_config(cfg, site="s", gateway="g", clock=SystemClock(), base=tmp_path, batch_size=7)
    assert (w.url, w.org, w.bucket, w._token, w.batch_size) == ("http://127.0.0.1:9", "o", "b", "s3cret", 7)


def test_bad_sizes_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TsdbWriter("u", "o", "b", None, site="s", gateway="g", clock=SystemClock(), batch_size=10, max_buffer=5)


# ---- against VictoriaMetrics ----


async def test_points_round_trip_with_values_tags_and_timestamps(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url)
    ts = t0()
    w.add_point(o2(0, ts, 20.9))
    w.add_point(o2(0, ts + 1000 * MS, 19.4))
    w.add_point(reading_point("cs1-lel", "lel", "%LEL", "cs-1", 3.0, Quality.GOOD, ts))
    w.add_point(reading_point("m1-temp", "temperature", "°C", "pump-1", 71.25, Quality.GOOD, ts + 5 * MS))
    w.add_point(reading_point("m1-vib", "vibration", "mm/s", "pump-1", 120.0, Quality.BAD, ts))
    async with running(w):
        await wait_for(lambda: w.written == 5, timeout=10, what="5 points written")
    assert w.connected is True and w.status().written == 5 and w.status().buffered == 0
    got = await export(vm, '{__name__=~"gas_.*|condition_.*"}', 5)
    ms = ts // MS
    assert got == {
        key("gas_o2", signal="cs1-o2", zone="cs-1", unit="%vol", quality="good"): [(ms, 20.9), (ms + 1000, 19.4)],
        key("gas_lel", signal="cs1-lel", zone="cs-1", unit="%LEL", quality="good"): [(ms, 3.0)],
        key("condition_temperature", signal="m1-temp", zone="pump-1", unit="°C", quality="good"): [(ms + 5, 71.25)],
        key("condition_vibration", signal="m1-vib", zone="pump-1", unit="mm/s", quality="bad"): [(ms, 120.0)],
    }


async def test_escaping_round_trips(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url)
    ts = t0()
    tags = {"signal": "a b,c=d", "zone": "back\\slash", "unit": "m/s²", "note": "x=y z", "nl": "l1\nl2"}
    w.add("my meas,x", tags, {"f k=1": 4.5, "n": 7, "on": True}, ts)
    assert await w.flush()
    got = await export(vm, '{__name__=~"my meas,x_.*"}', 3)
    labels = dict(tags, nl="l1\\nl2")  # a newline cannot travel: it arrives as backslash + n
    ms = ts // MS
    assert got == {
        key("my meas,x_f k=1", **labels): [(ms, 4.5)],
        key("my meas,x_n", **labels): [(ms, 7.0)],
        key("my meas,x_on", **labels): [(ms, 1.0)],
    }


async def test_store_down_at_start_then_up(make_writer: Any) -> None:
    with victoria(start=False) as vm:
        w = make_writer(vm.url)
        ts = t0()
        async with running(w):
            for i in range(50):
                w.add_point(o2(i, ts + i * MS))
            await wait_for(lambda: w.connected is False, timeout=5, what="first write fails")
            assert w.last_error and w.written == 0 and w.buffered == 50
            await asyncio.to_thread(vm.start)
            await wait_for(lambda: w.written == 50, timeout=10, what="buffered points written")
            assert w.connected is True and w.dropped == 0
        got = await export(vm, '{__name__="gas_o2"}', 50)
    assert list(got.values()) == [[(ts // MS + i, float(i)) for i in range(50)]]


async def test_store_stopped_mid_run_then_restarted(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url)
    ts = t0()
    async with running(w):
        for i in range(20):
            w.add_point(o2(i, ts + i * MS))
        await wait_for(lambda: w.written == 20, timeout=10, what="first 20 written")
        await asyncio.to_thread(vm.stop)
        for i in range(20, 50):
            w.add_point(o2(i, ts + i * MS))
            await asyncio.sleep(0.005)  # spread over several failing attempts
        await wait_for(lambda: w.connected is False, timeout=5, what="writer sees the store down")
        assert w.written == 20 and w.buffered == 30
        await asyncio.to_thread(vm.start)
        await wait_for(lambda: w.written == 50, timeout=10, what="points from the outage written")
    assert w.dropped == 0
    got = await export(vm, '{__name__="gas_o2"}', 50)
    assert list(got.values()) == [[(ts // MS + i, float(i)) for i in range(50)]]


async def test_overflow_drops_oldest_and_counts(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url, batch_size=5, max_buffer=10)
    ts = t0()
    for i in range(25):
        w.add_point(o2(i, ts + i * MS))
    assert (w.dropped, w.buffered) == (15, 10)
    assert await w.flush()
    assert w.written == 10
    got = await export(vm, '{__name__="gas_o2"}', 10)
    assert list(got.values()) == [[(ts // MS + i, float(i)) for i in range(15, 25)]]


async def test_overflow_while_store_down_keeps_newest(make_writer: Any) -> None:
    """Adds interleave with failing writes (batch in flight, put back, trimmed): still the newest survive."""
    with victoria(start=False) as vm:
        w = make_writer(vm.url, batch_size=4, max_buffer=10, flush_interval_s=0.01, retry_min_s=0.01)
        ts = t0()
        async with running(w):
            for i in range(40):
                w.add_point(o2(i, ts + i * MS))
                await asyncio.sleep(0.002)
            await wait_for(lambda: (w.dropped, w.buffered) == (30, 10), timeout=5, what="30 dropped, 10 kept")
            assert w.connected is False
            await asyncio.to_thread(vm.start)
            await wait_for(lambda: w.written == 10, timeout=10, what="the 10 kept are written")
        got = await export(vm, '{__name__="gas_o2"}', 10)
    assert w.dropped == 30
    assert list(got.values()) == [[(ts // MS + i, float(i)) for i in range(30, 40)]]


async def test_nan_and_inf_are_never_written(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url)
    ts = t0()
    w.add_point(reading_point("cs1-o2", "o2", "%vol", "cs-1", math.nan, Quality.BAD, ts))
    w.add_point(o2(0, ts + 1 * MS, math.inf))
    w.add_point(o2(0, ts + 2 * MS, -math.inf))
    w.add("condition", {"signal": "m1"}, {"a": math.nan, "b": 1.5}, ts + 3 * MS)
    w.add_point(o2(0, ts + 4 * MS, 20.5))
    assert (w.nonfinite, w.rejected, w.buffered) == (4, 3, 2)
    assert await w.flush()
    got = await export(vm, '{__name__=~"gas_.*|condition_.*"}', 2)
    assert got == {
        key("gas_o2", signal="cs1-o2", zone="cs-1", unit="%vol", quality="good"): [(ts // MS + 4, 20.5)],
        key("condition_b", signal="m1"): [(ts // MS + 3, 1.5)],
    }


async def test_close_flushes_and_gives_up_within_timeout(vm: Victoria, make_writer: Any) -> None:
    w = make_writer(vm.url)
    ts = t0()
    for i in range(100):
        w.add_point(o2(i, ts + i * MS))
    await w.close(timeout_s=5)
    assert (w.written, w.buffered, w.dropped) == (100, 0, 0)
    assert sum(map(len, (await export(vm, '{__name__="gas_o2"}', 100)).values())) == 100
    w.add_point(o2(0, ts))  # after close: counted, not kept
    assert (w.dropped, w.buffered) == (1, 0)

    with victoria(start=False) as down:
        w2 = make_writer(down.url)
        for i in range(10):
            w2.add_point(o2(i, ts + i * MS))
        started = time.monotonic()
        await w2.close(timeout_s=1.0)
        assert time.monotonic() - started < 2.0
        assert (w2.written, w2.buffered, w2.dropped, w2.connected) == (0, 0, 10, False)


# ---- HTTP statuses, from a scripted server (VictoriaMetrics answers 204 to everything we send) ----


@asynccontextmanager
async def scripted(
    statuses: list[int], max_lines: int = 0, hold: asyncio.Event | None = None, arrived: list[str] | None = None
) -> AsyncIterator[tuple[str, list[str]]]:
    """A store that answers `statuses` in turn (then 204) and 413 to bodies over `max_lines` lines.

    Yields (url, bodies answered 204). With `hold`, the first request waits for it before answering
    (a batch stays in flight); every request's body is appended to `arrived` on arrival.
    """
    bodies: list[str] = []
    script = list(statuses)
    held = False

    async def write(request: web.Request) -> web.Response:
        nonlocal held
        body = await request.text()
        if arrived is not None:
            arrived.append(body)
        if hold is not None and not held:
            held = True
            async with asyncio.timeout(10):
                await hold.wait()
        if max_lines and body.count("\n") + 1 > max_lines:
            return web.Response(status=413, text="request entity too large")
        status = script.pop(0) if script else 204
        if status == 204:
            bodies.append(body)
        return web.Response(status=status, text="" if status == 204 else "scripted", headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", bodies
    finally:
        await runner.cleanup()


def values(bodies: list[str]) -> list[float]:
    return [float(line.rsplit(" ", 2)[1].split("=")[1]) for b in bodies for line in b.split("\n")]


@pytest.mark.parametrize(("first", "kept", "dropped"), [(503, range(2, 12), 2), (204, range(12), 0)])
async def test_overflow_during_a_write_in_flight(make_writer: Any, first: int, kept: range, dropped: int) -> None:
    """Points added while the oldest batch is in flight: if that write fails, its oldest go; if it succeeds, none."""
    hold, arrived = asyncio.Event(), list[str]()
    async with scripted([first], hold=hold, arrived=arrived) as (url, bodies):
        w = make_writer(url, batch_size=4, max_buffer=10)
        for i in range(4):
            w.add_point(o2(i, 1_000 + i))
        async with running(w):
            await wait_for(lambda: len(arrived) == 1, timeout=5, what="first batch in flight")
            for i in range(4, 12):  # 4 in flight + 8 queued: two over the bound
                w.add_point(o2(i, 1_000 + i))
            assert (w.buffered, w.dropped) == (12, 0)  # nothing lost yet: the batch in flight may still land
            hold.set()
            await wait_for(lambda: w.written == len(kept), timeout=5, what=f"{len(kept)} written")
        assert (values(bodies), w.dropped) == ([float(i) for i in kept], dropped)


async def test_server_errors_are_retried(make_writer: Any) -> None:
    async with scripted([503, 500]) as (url, bodies):
        w = make_writer(url)
        async with running(w):
            for i in range(3):
                w.add_point(o2(i, 1_000 + i))
            await wait_for(lambda: w.written == 3, timeout=5, what="written after two 5xx")
        assert w.last_error.startswith("HTTP 500") and w.connected is True
        assert [b.count("\n") + 1 for b in bodies] == [3]


async def test_bad_request_is_dropped_not_retried(make_writer: Any) -> None:
    async with scripted([400]) as (url, bodies):
        w = make_writer(url)
        for i in range(3):
            w.add_point(o2(i, 1_000 + i))
        assert await w.flush()
        assert (w.rejected, w.written, w.buffered, bodies) == (3, 0, 0, [])
        w.add_point(o2(9, 2_000))
        assert await w.flush()
        assert (w.written, len(bodies)) == (1, 1)


async def test_too_large_halves_the_batch(make_writer: Any) -> None:
    async with scripted([], max_lines=4) as (url, bodies):
        w = make_writer(url, batch_size=16)
        for i in range(16):
            w.add_point(o2(i, 1_000 + i))
        async with running(w):
            await wait_for(lambda: w.written == 16, timeout=5, what="written in smaller batches")
        assert [b.count("\n") + 1 for b in bodies] == [4, 4, 4, 4]
        assert values(bodies) == [float(i) for i in range(16)]


# ---- a figure for the report (printed, not asserted) ----


async def test_throughput_figure(vm: Victoria, make_writer: Any) -> None:
    """20k points/s paced on the loop for 2 s while run() flushes; prints µs per add and CPU share."""
    w = make_writer(vm.url, flush_interval_s=1.0, timeout_s=5.0)
    rate, seconds, step_s = 20_000, 2.0, 0.05
    per_step = int(rate * step_s)
    clock = SystemClock()
    async with running(w):
        cpu0, wall0 = time.process_time(), time.monotonic()
        add_s = 0.0
        for step in range(int(seconds / step_s)):
            a = time.perf_counter()
            for i in range(per_step):
                value = 20.0 + (step * per_step + i) % 10
                ts = w.stamp(clock.monotonic())
                w.add_point(reading_point("cs1-o2", "o2", "%vol", "cs-1", value, Quality.GOOD, ts))
            add_s += time.perf_counter() - a
            await asyncio.sleep(max(0.0, wall0 + (step + 1) * step_s - time.monotonic()))
        paced = time.monotonic() - wall0
        total = int(seconds / step_s) * per_step
        await wait_for(lambda: w.written == total, timeout=20, what="all written")
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(
        f"\ntsdb: {total} points paced at {rate}/s over {paced:.2f} s: "
        f"{add_s / total * 1e6:.2f} µs per reading_point+stamp+add; written {wall - paced:.2f} s after the last add; "
        f"CPU {cpu:.2f} s in {wall:.2f} s wall = {cpu / wall:.0%} of one core (add + encode + influxdb-client POST)"
    )
    assert w.dropped == 0 and w.rejected == 0

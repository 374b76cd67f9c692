"""The status page in Debian's Chromium (playwright), against a real `edge-gateway demo` process.

Part 1 drives the real gateway: overview, loopback-only requests, live values, the
evacuation banner, the connection-lost banner, and layout at 1024x600 and 375x667.
Part 2 drives tests.support.browser.StubGateway (the real page + gateway.status.auth over a
controlled snapshot): login/acknowledge flows before the daemon wires the write API,
and the sections the daemon does not publish yet (presence, permits).
Part 3 is the condition-monitoring view (#/condition) over the stub's /api/trends/{point}:
machine cards, ISO bands, where zone-C minutes are drawn, refresh/stale/404, layout.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    ISO_GROUP2_RIGID,
    DemoGateway,
    RequestLog,
    StubGateway,
    chromium,
    demo_gateway,
    have_browser,
    horizontal_overflow,
    stub_condition,
    stub_snapshot,
    trend_series,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_browser(), reason="needs playwright and /usr/bin/chromium"),
]

DESKTOP = {"width": 1024, "height": 600}
PHONE = {"width": 375, "height": 667}
O2 = '.tile[data-zone="tank-t101"] [data-value="t101_o2"]'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoGateway]:
    """One o2-drop demo for part 1 (its 40 s loop: O2 falls at 6 s, EVACUATE ~10 s, ack at 28 s)."""
    with demo_gateway(tmp_path_factory.mktemp("demo"), scenario="o2-drop", duration=90) as gw:
        yield gw


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport=DESKTOP)
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


def _api_state(gw: DemoGateway) -> dict[str, Any]:
    with urllib.request.urlopen(gw.url + "api/state", timeout=5) as r:  # loopback only
        return dict(json.load(r))


# ---- part 1: the real gateway -----------------------------------------------------------------


def test_overview_loads_and_no_request_leaves_loopback(demo: DemoGateway, page: Any) -> None:
    log = RequestLog()
    log.watch(page)
    page.goto(demo.url)
    page.wait_for_selector('.tile[data-zone="tank-t101"]')
    page.wait_for_selector('.tile[data-zone="bay-2"]')
    zones = {z["id"]: z for z in _api_state(demo)["zones"]}
    assert page.inner_text('.tile[data-zone="tank-t101"] .tile-name') == zones["tank-t101"]["name"]
    # State in words and an icon, never colour alone.
    label = page.inner_text('.tile[data-zone="bay-2"] .state-label')
    assert label in {"NORMAL", "WARNING", "ALARM", "EVACUATE", "FAULT", "NO DATA"}
    assert page.locator('.tile[data-zone="bay-2"] .tile-state svg use').count() == 1
    page.wait_for_selector(".link-live")
    for route in ("#/zone/tank-t101", "#/alarms", "#/permits", "#/devices", "#/connectivity"):
        page.goto(demo.url + route)
        page.wait_for_selector("main .panel")
    page.goto(demo.url + "?screen=1")
    page.wait_for_selector(".wall-zone .gauge")
    assert any(u.endswith("/api/events") for u in log.urls), log.urls
    assert any("/static/app.js" in u for u in log.urls)
    assert log.foreign() == [], log.foreign()


def test_value_changed_at_the_simulator_appears_on_screen(demo: DemoGateway, page: Any) -> None:
    page.goto(demo.url)
    page.wait_for_selector(O2)
    first = page.inner_text(O2)
    # The scenario ramps O2 20.9 -> 19.0 -> 20.9 %vol in 0.1 steps; wait for the page to follow.
    page.wait_for_function(
        "([sel, first]) => { const e = document.querySelector(sel); return e && e.textContent !== first; }",
        arg=[O2, first],
        timeout=30_000,
    )
    now = float(page.inner_text(O2))
    assert 18.5 <= now <= 21.0 and f"{now:.1f}" != first
    row = page.locator('.tile[data-zone="tank-t101"] li[data-signal="t101_o2"]')
    assert "%vol" in row.inner_text()


def test_evacuation_banner_appears_when_o2_drops_and_clears_after_ack(demo: DemoGateway, page: Any) -> None:
    page.goto(demo.url)
    banner = page.locator("#banner-evac")
    banner.wait_for(state="visible", timeout=45_000)
    assert re.search(r"EVACUATE\s+Tank T-101", banner.inner_text())
    # The demo has no badge receiver: the headcount is unknown, never "nobody inside" (issue 17.1).
    assert "headcount unknown (no badge receiver covers this zone)" in banner.inner_text()
    assert "nobody" not in banner.inner_text()
    assert "headcount unknown" in page.inner_text('.tile[data-zone="tank-t101"] .tile-people')
    assert page.get_attribute('.tile[data-zone="tank-t101"]', "data-state") == "evacuate"
    assert page.title().startswith("EVACUATE")
    # The scenario's operator acknowledges once O2 is back: the banner must go (it is not static).
    banner.wait_for(state="hidden", timeout=30_000)
    assert not any(z["evacuate"] for z in _api_state(demo)["zones"])


def test_a_bad_detector_shows_no_number_and_its_last_good_value(tmp_path: Path, page: Any) -> None:
    """Issue 17.1: the demo's detector-fault scenario cuts the cable at 20 s: the tile shows "—"
    and "last good 20.9 %vol at HH:MM:SS (N s ago)", never a confident 20.9 beside BAD."""
    with demo_gateway(tmp_path, scenario="detector-fault", duration=60) as gw:
        page.goto(gw.url)
        item = page.locator('.tile[data-zone="tank-t101"] li[data-signal="t101_o2"]')
        item.locator(".last-good").wait_for(state="visible", timeout=45_000)
        text = item.inner_text()
        assert re.search(r"last good 20\.9 %vol at \d\d:\d\d:\d\d \(", text), text
        assert item.locator(".v").inner_text() == "—"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1024x600", "375x667"])
def test_layout_has_no_horizontal_overflow(demo: DemoGateway, browser: Any, viewport: dict[str, int]) -> None:
    ctx = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    try:
        p = ctx.new_page()
        over = {}
        routes = ("", "#/zone/tank-t101", "#/alarms", "#/permits", "#/devices", "#/connectivity", "#/condition")
        for route in (*routes, "?screen=1"):
            p.goto(demo.url + route)
            p.wait_for_selector("main .panel, main .board, main .chart-svg")
            p.wait_for_selector(".link-live")
            over[route or "overview"] = horizontal_overflow(p)
        assert over == dict.fromkeys(over, 0)
    finally:
        ctx.close()


def test_connection_lost_banner_when_the_daemon_stops(tmp_path: Path, page: Any) -> None:
    with demo_gateway(tmp_path, scenario="o2-drop", duration=60) as gw:
        page.goto(gw.url)
        page.wait_for_selector(".link-live")
        page.wait_for_selector(".tile.st-normal")
        assert page.is_hidden("#banner-conn")
        zones = len(_api_state(gw)["zones"])
        gw.stop()
        page.wait_for_selector("#banner-conn", state="visible", timeout=5_000)
    assert "Connection lost" in page.inner_text("#banner-conn")
    # Everything is marked stale, and nothing stale is drawn green.
    assert page.locator(".tile.st-normal").count() == 0
    assert page.locator(".tile").count() == page.locator(".tile.is-stale").count() == zones >= 2
    assert page.locator(".tile-values li.st-normal").count() == 0


def test_condition_view_charts_the_real_trends(demo: DemoGateway, page: Any) -> None:
    log = RequestLog()
    log.watch(page)
    page.goto(demo.url + "#/condition")
    (m,) = _api_state(demo)["condition"]["machines"]
    fig = f'.machine[data-machine="{m["id"]}"] .chart'
    page.wait_for_selector(f'{fig}[data-kind="vibration"] svg.chart-svg')
    page.wait_for_selector(f'{fig}[data-kind="temperature"] svg.chart-svg')
    labels = "(sel) => [...document.querySelectorAll(sel + ' .limit-label')].map((t) => t.textContent)"
    assert page.evaluate(labels, f'{fig}[data-kind="vibration"]') == ["A/B", "B/C", "C/D"]
    assert page.evaluate(labels, f'{fig}[data-kind="temperature"]') == ["alarm", "trip"]
    assert int(page.get_attribute(f'{fig}[data-kind="vibration"] path.mean', "data-points") or 0) >= 1
    label = page.inner_text(f'.machine[data-machine="{m["id"]}"] .state-label')
    assert label in {"NORMAL", "WARNING", "ALARM", "TRIP", "SENSOR FAULT", "NO DATA"}
    assert {u.split("/api/trends/")[1] for u in log.urls if "/api/trends/" in u} == {
        m["signals"]["vibration"],
        m["signals"]["temperature"],
    }
    assert log.foreign() == [], log.foreign()


# ---- part 2: the stub gateway (auth routes mounted; sections still to come) -------------------


@pytest.fixture
def stub() -> Iterator[StubGateway]:
    with StubGateway() as s:
        yield s


def _toast(page: Any, pattern: str) -> str:
    page.wait_for_function(
        "(re) => { const t = document.getElementById('toast');"
        " return !t.hidden && new RegExp(re).test(t.textContent); }",
        arg=pattern,
        timeout=5_000,
    )
    return str(page.inner_text("#toast"))


def _login(page: Any, user: str, password: str) -> None:
    page.click("#login-btn")
    page.fill("#login-user", user)
    page.fill("#login-pw", password)
    page.click('#login-form button[type="submit"]')
    page.wait_for_selector("#login-dlg", state="hidden")


def test_ack_refused_without_login_then_done_as_operator(stub: StubGateway, page: Any) -> None:
    log = RequestLog()
    log.watch(page)
    page.goto(stub.url + "#/zone/tank-t101")
    ack = page.locator('button[data-write="/api/ack"]')
    assert ack.inner_text().strip() == "Acknowledge zone"  # visible without login
    ack.click()
    assert "refused" in _toast(page, "refused")
    page.wait_for_selector("#login-dlg[open]")
    assert stub.writes == []
    assert stub.audit[-1][:5] == ("-", "-", "ack", "tank-t101/*", False)
    page.fill("#login-user", "otto")
    page.fill("#login-pw", "wrong")
    page.click('#login-form button[type="submit"]')
    page.wait_for_function("() => document.getElementById('login-err').textContent.includes('wrong')")
    page.fill("#login-pw", "operator-pw")
    page.click('#login-form button[type="submit"]')
    page.wait_for_selector("#login-dlg", state="hidden")
    assert page.inner_text("#who-name") == "otto (operator)"
    page.locator('button[data-write="/api/ack"]').click()
    _toast(page, "done")
    assert stub.writes == [("ack", "otto", {"zone": "tank-t101", "target": "*"})]
    assert stub.audit[-1][:5] == ("otto", "operator", "ack", "tank-t101/*", True)
    page.goto(stub.url + "#/alarms")
    page.wait_for_selector('.alarm[data-signal="t101_o2"] >> text=acknowledged by otto')
    assert log.foreign() == []


def test_viewer_is_refused_and_logout_ends_the_session(stub: StubGateway, page: Any) -> None:
    page.goto(stub.url + "#/zone/bay-2")
    page.wait_for_selector(".zone-head")
    _login(page, "vera", "viewer-pw")
    page.locator('button[data-write="/api/silence"]').click()
    assert "needs role operator" in _toast(page, "refused")
    assert stub.writes == []
    page.click("#login-btn")  # now "Log out"
    page.wait_for_function("() => document.getElementById('who-name').textContent === 'not logged in'")
    assert len(stub.auth.sessions) == 0


def test_permit_checklist_is_live_and_counts_down(stub: StubGateway, page: Any) -> None:
    page.goto(stub.url + "#/permits")
    card = page.locator('.permit[data-permit="HW-0042"]')
    card.wait_for()
    assert card.locator(".checklist li.ok").count() == 3
    bad = card.locator(".checklist li.not-ok")
    assert bad.count() == 2 and "no face match in the last 60 s" in bad.first.inner_text()
    assert "NOT released" in card.inner_text()
    first = card.locator(".countdown").inner_text()
    assert re.fullmatch(r"1:(29:5\d|30:00) left", first), first
    page.wait_for_function(
        "(t) => document.querySelector('.permit .countdown').textContent !== t", arg=first, timeout=5_000
    )

    def all_ok(s: dict[str, Any]) -> None:
        for c in s["permits"][0]["checklist"]:
            c["ok"] = True
        s["permits"][0]["released"] = True

    stub.update(all_ok)
    page.wait_for_selector('.permit[data-permit="HW-0042"] >> text=Ignition RELEASED')
    assert card.locator(".checklist li.not-ok").count() == 0


def test_evacuation_banner_lists_people_inside(stub: StubGateway, page: Any) -> None:
    page.goto(stub.url)
    banner = page.locator("#banner-evac")
    banner.wait_for(state="visible")
    assert "2 inside: Li Wei, Ana Ruiz" in banner.inner_text()
    page.goto(stub.url + "#/zone/tank-t101")
    assert page.locator(".people li").count() == 2

    def clear(s: dict[str, Any]) -> None:
        s["zones"][0].update(state="normal", severity="normal", evacuate=False)

    stub.update(clear)
    banner.wait_for(state="hidden")


def test_missing_sections_say_not_configured_and_stale_is_never_green(page: Any) -> None:
    snap = stub_snapshot()
    for key in ("presence", "permits", "outbox"):
        del snap[key]
    snap["signals"][2].update(stale=True, quality="stale", age_s=7.5)  # bay2_o2
    with StubGateway(snap) as s:
        page.goto(s.url + "#/zone/bay-2")
        page.wait_for_selector(".gauge")
        text = page.inner_text("main")
        assert "Presence: not configured" in text and "Permits: not configured" in text
        gauge = page.locator('.gauge[data-signal="bay2_o2"]')
        assert "st-stale" in (gauge.get_attribute("class") or "")
        assert "stale" in gauge.locator(".flag").inner_text().lower()
        assert re.search(r"read \d+(\.\d)? s ago", gauge.locator(".age").inner_text())
        page.goto(s.url + "#/connectivity")
        page.wait_for_selector("text=Outbox: not configured")
        page.goto(s.url)
        row = page.locator('.tile[data-zone="bay-2"] li[data-signal="bay2_o2"]')
        assert "st-normal" not in (row.get_attribute("class") or "")


# ---- part 3: condition monitoring (stub gateway serving /api/trends/{point}) ------------------

BAND_LABELS = "() => [...document.querySelectorAll('{fig} .limit-label')].map((t) => t.textContent)"
VIB = '.machine[data-machine="p201"] .chart[data-kind="vibration"]'
TEMP = '.machine[data-machine="p201"] .chart[data-kind="temperature"]'


@pytest.fixture
def cond_stub() -> Iterator[StubGateway]:
    snap = stub_snapshot()
    snap["condition"], trends = stub_condition()
    with StubGateway(snap) as s:
        s.trends.update(trends)
        yield s


def _mean_points(page: Any, fig: str) -> list[tuple[float, float]]:
    """(x, y) of every vertex of a chart's mean line, from its SVG path."""
    d = page.get_attribute(f"{fig} path.mean", "d") or ""
    nums = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return list(zip(nums[0::2], nums[1::2], strict=True))


def _limit_y(page: Any, fig: str, key: str) -> float:
    return float(page.get_attribute(f'{fig} line[data-limit="{key}"]', "y1") or "nan")


def test_condition_view_shows_machine_cards_and_both_charts(cond_stub: StubGateway, browser: Any) -> None:
    # A zone east of UTC proves the time axis is local: 08:00Z is 13:30 in Kolkata.
    ctx = browser.new_context(viewport=DESKTOP, timezone_id="Asia/Kolkata")
    try:
        page = ctx.new_page()
        log = RequestLog()
        log.watch(page)
        page.goto(cond_stub.url)
        page.click('#nav a[data-route="condition"]')  # reachable from the navigation
        page.wait_for_selector(f"{VIB} svg.chart-svg")
        page.wait_for_selector(f"{TEMP} svg.chart-svg")
        card = page.locator('.machine[data-machine="p201"]')
        # State in words and an icon, never colour alone.
        assert card.locator(".state-label").inner_text() == "ALARM"
        assert card.locator(".machine-state svg use").get_attribute("href") == "#alarm"
        vib = card.locator('li[data-value="vibration"]')
        assert vib.locator(".v").inner_text() == "3.2" and "mm/s" in vib.inner_text()
        assert vib.locator(".iso-tag").inner_text() == "ISO zone C"
        assert card.locator('li[data-value="temperature"] .v').inner_text() == "74.0"
        assert page.evaluate(BAND_LABELS.replace("{fig}", VIB)) == ["A/B", "B/C", "C/D"]
        assert page.evaluate(BAND_LABELS.replace("{fig}", TEMP)) == ["alarm", "trip"]
        assert page.locator(f"{VIB} rect.iso-band").evaluate_all("rs => rs.map(r => r.dataset.zone)") == list("ABCD")
        assert page.locator(f"{VIB} .axis-unit").text_content() == "mm/s"
        assert page.locator(f"{TEMP} .axis-unit").text_content() == "°C"
        # 6-hourly ticks on local hours; 12:00 IST = 06:30Z, 22.5 h into the window 07:59:59Z..08:00Z.
        ticks = page.locator(f"{VIB} text.tick-x").evaluate_all(
            "ts => ts.map(t => [t.textContent, +t.getAttribute('x')])"
        )
        assert [t for t, _ in ticks] == ["18:00", "00:00", "06:00", "12:00"]
        assert dict(ticks)["12:00"] == pytest.approx(44 + 22.5 / 24 * (480 - 44 - 40), abs=0.2)
        assert "UTC+05:30" in page.inner_text(".cond-note")
        assert page.locator('.machine[data-machine="f12"] .state-label').inner_text() == "NORMAL"
        assert page.locator(".chart svg.chart-svg").count() == 4
        asked = {u.rsplit("/", 1)[1] for u in log.urls if "/api/trends/" in u}
        assert asked == {"p201_vib", "p201_temp", "f12_vib", "f12_temp"}
        assert log.foreign() == [], log.foreign()
    finally:
        ctx.close()


def test_zone_c_values_are_drawn_between_the_bc_and_cd_lines(page: Any) -> None:
    snap = stub_snapshot()
    snap["condition"], trends = stub_condition()
    # Two hours: the first in zone A (1.0 mm/s), the second in zone C (3.5 mm/s).
    trends["p201_vib"] = trend_series(
        "p201_vib", "vibration", "mm/s", [1.0] * 60 + [3.5] * 60, spread=0.2, iso=ISO_GROUP2_RIGID
    )
    with StubGateway(snap) as s:
        s.trends.update(trends)
        page.goto(s.url + "#/condition")
        page.wait_for_selector(f"{VIB} path.mean")
        pts = sorted(_mean_points(page, VIB))
        assert len(pts) == 120 and page.get_attribute(f"{VIB} path.mean", "data-points") == "120"
        ab, bc, cd = (_limit_y(page, VIB, k) for k in ("ab", "bc", "cd"))
        assert cd < bc < ab  # SVG y grows downwards: a higher value is drawn higher up
        zone_a, zone_c = pts[:60], pts[60:]
        assert all(y > ab for _, y in zone_a), zone_a[:3]
        assert all(cd < y < bc for _, y in zone_c), zone_c[:3]
        assert zone_a[-1][0] < zone_c[0][0]  # time runs left to right
        last_y = float(page.get_attribute(f"{VIB} circle.last", "cy") or "nan")
        assert cd < last_y < bc
        # Zone C's band spans exactly B/C..C/D, and the data is drawn on top of the bands.
        rect = page.locator(f'{VIB} rect.iso-band[data-zone="C"]')
        y, height = float(rect.get_attribute("y") or "nan"), float(rect.get_attribute("height") or "nan")
        assert (y, y + height) == (pytest.approx(cd, abs=0.11), pytest.approx(bc, abs=0.11))
        order = page.locator(f"{VIB} svg > g").evaluate_all("gs => gs.map(g => g.getAttribute('class'))")
        assert order.index("series") > order.index("iso-bands")


def test_trends_refresh_go_stale_on_failure_and_a_404_says_no_data(page: Any) -> None:
    snap = stub_snapshot()
    snap["condition"], trends = stub_condition()
    del trends["f12_temp"]  # the gateway keeps no trend for it: 404
    with StubGateway(snap) as s:
        s.trends.update(trends)
        page.goto(s.url + "?trend_s=1#/condition")  # refresh every 1 s instead of 60 s
        page.wait_for_selector(f"{VIB} path.mean")
        none = page.locator('.machine[data-machine="f12"] .chart[data-kind="temperature"]')
        none.locator(".chart-msg").wait_for()
        assert "no data" in none.inner_text() and none.locator("svg.chart-svg").count() == 0
        assert page.locator('.machine[data-machine="f12"] .chart[data-kind="vibration"] svg.chart-svg').count() == 1
        # A refresh picks up new minutes.
        s.trends["p201_vib"] = trend_series("p201_vib", "vibration", "mm/s", [2.0] * 30, iso=ISO_GROUP2_RIGID)
        page.wait_for_selector(f'{VIB} path.mean[data-points="30"]', state="attached", timeout=8_000)
        assert "is-stale" not in (page.get_attribute(VIB, "class") or "")
        # A failed refresh keeps the chart but marks it stale.
        s.trend_status["p201_vib"] = 503
        page.wait_for_selector(f"{VIB}.is-stale", timeout=8_000)
        assert "stale: HTTP 503" in page.locator(f"{VIB} figcaption").inner_text()
        assert page.locator(f"{VIB} svg.chart-svg").count() == 1
        # Gone altogether: "no data", not a blank and not the old chart.
        del s.trend_status["p201_vib"], s.trends["p201_vib"]
        page.wait_for_selector(f"{VIB}.chart-none", timeout=8_000)
        assert "no data" in page.inner_text(VIB) and page.locator(f"{VIB} svg.chart-svg").count() == 0


def test_connection_lost_marks_condition_stale_never_green(cond_stub: StubGateway, browser: Any) -> None:
    ctx = browser.new_context(viewport=DESKTOP)
    try:
        page = ctx.new_page()
        page.goto(cond_stub.url + "#/condition")
        page.wait_for_selector('.machine.st-normal[data-machine="f12"] svg.chart-svg')
        page.wait_for_selector(".link-live")
        ctx.set_offline(True)
        page.wait_for_selector("#banner-conn", state="visible", timeout=10_000)
        page.wait_for_selector('.machine[data-machine="f12"] .chart.is-stale')
        assert page.locator(".machine.st-normal").count() == 0
        assert page.locator('.machine[data-machine="f12"] .state-label').inner_text() == "NO DATA"
        assert page.locator(".chart.is-stale").count() == page.locator(".chart").count() == 4
    finally:
        ctx.close()


@pytest.mark.parametrize("condition", [None, {"machines": []}], ids=["none", "empty"])
def test_condition_view_without_machines_says_not_configured(page: Any, condition: Any) -> None:
    snap = stub_snapshot()
    snap["condition"] = condition  # the daemon's snapshot has None when no machine is configured
    with StubGateway(snap) as s:
        page.goto(s.url + "#/condition")
        page.wait_for_selector("main .not-configured")
        assert page.inner_text("main .not-configured") == "Condition monitoring: not configured"
        assert s.trend_hits == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1024x600", "375x667"])
def test_condition_view_has_no_horizontal_overflow(
    cond_stub: StubGateway, browser: Any, viewport: dict[str, int]
) -> None:
    ctx = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    try:
        p = ctx.new_page()
        p.goto(cond_stub.url + "#/condition")
        p.wait_for_function("() => document.querySelectorAll('.chart svg.chart-svg').length === 4")
        assert horizontal_overflow(p) == 0
        widths = p.locator(".chart svg.chart-svg").evaluate_all(
            "ss => ss.map(s => [s.getBoundingClientRect().right, s.viewBox.baseVal.width])"
        )
        assert all(right <= viewport["width"] for right, _ in widths), widths
        # Phones get the narrower viewBox so that chart text stays readable.
        assert {vb for _, vb in widths} == {360 if viewport is PHONE else 480}
    finally:
        ctx.close()


def test_parked_outbox_records_are_listed_each_with_a_retry(page: Any) -> None:
    snap = stub_snapshot()
    snap["outbox"] = {
        "depth": 4,
        "parked": 1,
        "parked_records": [{"id": 7, "stream": "hazards", "reason": "HTTP 422: zone unknown", "created_utc": "x"}],
    }
    with StubGateway(snap) as s:
        page.goto(s.url + "#/connectivity")
        row = page.locator('.parked[data-parked="7"]')
        row.wait_for()
        assert "Parked #7" in row.inner_text() and "HTTP 422: zone unknown" in row.inner_text()
        button = row.locator("button")
        assert button.get_attribute("data-write") == "/api/outbox/retry"
        assert "btn-locked" in (button.get_attribute("class") or "")  # an admin login is needed
        assert "parked_records" not in page.inner_text("main")  # the raw list is not dumped as JSON

"""Take the status page screenshots in docs/screenshots/ (run by hand, not by pytest).

    python -m tests.support.screenshots [--out docs/screenshots]

Starts `edge-gateway demo --scenario o2-drop`, waits for the EVACUATE alarm, and shoots the
overview, a zone, the alarms, the devices, the wall display and the phone overview; then the
permit view and the presence banner from the stub gateway (the daemon does not publish
permits yet), and the connection-lost state after stopping the demo.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.browser import StubGateway, chromium, demo_gateway

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1024, "height": 600}
PHONE = {"width": 375, "height": 667}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def shot(page: object, name: str, full: bool = False) -> None:
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=full)  # type: ignore[attr-defined]
        shots.append(path)

    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        with demo_gateway(Path(tmp), scenario="o2-drop", duration=120) as gw:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(gw.url)
            try:
                page.wait_for_selector('.tile[data-zone="tank-t101"][data-state="evacuate"]', timeout=30_000)
            except Exception:
                print(page.evaluate("document.body.innerText"), gw.log()[-4000:])
                raise
            shot(page, "overview")
            page.goto(gw.url + "#/zone/tank-t101")
            page.wait_for_selector(".gauge")
            shot(page, "zone", full=True)
            page.goto(gw.url + "#/alarms")
            page.wait_for_selector(".alarm")
            shot(page, "alarms")
            page.goto(gw.url + "#/devices")
            page.wait_for_selector("tr[data-device]")
            shot(page, "devices", full=True)
            wall = browser.new_page(viewport=DESKTOP)
            wall.goto(gw.url + "?screen=1")
            wall.wait_for_selector(".wall-zone .gauge")
            shot(wall, "wall")
            phone = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            phone.goto(gw.url)
            phone.wait_for_selector(".tile[data-state]")
            shot(phone, "phone-overview", full=True)
            gw.stop()
            page.evaluate("location.hash = '#/'")
            page.wait_for_selector("#banner-conn:not([hidden])", timeout=10_000)
            shot(page, "connection-lost")
        with StubGateway() as stub:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(stub.url + "#/permits")
            page.wait_for_selector(".permit")
            shot(page, "permits", full=True)
            page.goto(stub.url + "#/zone/tank-t101")
            page.wait_for_selector(".people")
            shot(page, "zone-people", full=True)
    for p in shots:
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

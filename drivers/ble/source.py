"""BLE badge source: bleak's BleakScanner on one BlueZ adapter -> Sighting events.

Emits, through the injected `emit`:
- `Sighting(badge=<canonical beacon id>, receiver, rssi, at)` for every iBeacon /
  Eddystone-UID advertisement (unknown badges included: the rules decide what they mean);
- `Rejected` for malformed beacon frames (all counted; event and log rate-limited per
  device and reason, because BlueZ repeats a bad frame with every RSSI update);
- `ReceiverStatus(receiver, up, reason)` on change only: up=False when the scanner
  cannot start or the adapter is removed / powered off / BlueZ leaves the bus, up=True
  when scanning (re)starts. Retries with jittered exponential backoff.

bleak and D-Bus exceptions are translated here; nothing but CancelledError leaves `run()`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from drivers.ble.adapter import BUS_ERRORS, AdapterWatch
from drivers.ble.codec import BeaconId, Rejection, decode_advertisement
from drivers.ble.errors import ReceiverDown, ReceiverDownReason
from rules.events import Event, ReceiverStatus, Rejected, Sighting

_SCAN_ERRORS: tuple[type[BaseException], ...] = (BleakError, TimeoutError, *BUS_ERRORS)
_RSSI_MIN = -126  # BlueZ/bleak report -127 when a device object has no live RSSI
_RSSI_MAX = 20
_REJECT_KEYS_MAX = 1024


class BleSource:
    """Scans one adapter and emits badge events. Construct once; `await run()` in a task.

    Args:
        emit: called (in the event loop, never blocking) with each event.
        receiver: this receiver's id, e.g. "gw-hci0" (the presence config maps it to a zone).
        adapter: BlueZ adapter name, e.g. "hci0".
        clock: monotonic seconds, stamped on each Sighting as `at`.
        backoff_initial_s / backoff_max_s: retry delays after the receiver goes down.
        reject_interval_s: at most one Rejected event and log line per device and reason
            per this interval (the count is kept for every frame).
        rng: jitter source (seeded in tests).
    """

    def __init__(
        self,
        emit: Callable[[Event], None],
        *,
        receiver: str,
        adapter: str = "hci0",
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        reject_interval_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if not receiver or not adapter:
            raise ValueError("BleSource: receiver and adapter must not be empty")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("BleSource: need 0 < backoff_initial_s <= backoff_max_s")
        self._emit = emit
        self.receiver = receiver
        self.adapter = adapter
        self._clock = clock
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._reject_interval_s = reject_interval_s
        self._rng = rng or random.Random()
        self._up: bool | None = None
        self._attempts = 0
        self._rejected = 0
        self._reject_last: dict[tuple[str, str], tuple[float, int]] = {}
        self._log = structlog.get_logger("drivers.ble").bind(receiver=receiver, adapter=adapter)

    @property
    def up(self) -> bool | None:
        """Last reported receiver state; None before the first attempt finished."""
        return self._up

    @property
    def attempts(self) -> int:
        """Scan starts tried since construction (1 + retries)."""
        return self._attempts

    @property
    def rejected_count(self) -> int:
        """Malformed beacon frames seen since start (every one, not only the reported ones)."""
        return self._rejected

    async def run(self) -> None:
        """Scan until cancelled; a lost adapter is reported and retried, never raised."""
        delay = self._backoff_initial_s
        while True:
            try:
                await self._scan_until_lost()
                delay = self._backoff_initial_s  # it was scanning: start the backoff afresh
            except ReceiverDown as exc:
                self._set_status(False, exc.reason, exc.detail)
            await asyncio.sleep(delay * self._rng.uniform(0.8, 1.2))
            delay = min(delay * 2.0, self._backoff_max_s)

    async def _scan_until_lost(self) -> None:
        """Scan until the adapter is lost (reported down, then returns); raises ReceiverDown
        when scanning cannot start."""
        self._attempts += 1
        watch = await AdapterWatch.open(self.receiver, self.adapter)
        try:
            scanner = BleakScanner(self._on_advert, bluez={"adapter": self.adapter})
            try:
                async with asyncio.timeout(10.0):
                    await scanner.start()
            except _SCAN_ERRORS as exc:
                raise ReceiverDown(self.receiver, self.adapter, ReceiverDownReason.SCAN_FAILED, _describe(exc)) from exc
            try:
                self._set_status(True, None, "")
                reason, detail = await watch.lost()
                # Report before the (possibly slow) teardown: the rules must know at once.
                self._set_status(False, reason, detail)
            finally:
                await self._stop_quietly(scanner)
        finally:
            watch.close()

    async def _stop_quietly(self, scanner: BleakScanner) -> None:
        # The adapter is usually gone already, so StopDiscovery fails: expected, not news.
        try:
            async with asyncio.timeout(5.0):
                await scanner.stop()
        except _SCAN_ERRORS as exc:
            self._log.debug("ble_scan_stop_failed", error=_describe(exc))

    def mark_down(self, detail: str) -> None:
        """The daemon's supervisor: this source failed and is being restarted; nothing it heard holds."""
        self._set_status(False, ReceiverDownReason.TASK_FAILED, detail)

    def _set_status(self, up: bool, reason: ReceiverDownReason | None, detail: str) -> None:
        if self._up is up:
            return
        self._up = up
        if up:
            self._log.info("ble_receiver_up")
            self._emit(ReceiverStatus(self.receiver, True, ""))
        else:
            self._log.warning("ble_receiver_down", reason=str(reason), detail=detail)
            self._emit(ReceiverStatus(self.receiver, False, f"{reason}: {detail}" if detail else str(reason)))

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        rssi = adv.rssi
        if rssi is None or not _RSSI_MIN <= rssi <= _RSSI_MAX:
            return  # no live RSSI: a cached device object, not an advertisement heard now
        found = decode_advertisement(adv.manufacturer_data, adv.service_data)
        if not found:
            return
        at = self._clock()
        for d in found:
            if isinstance(d, BeaconId):
                self._emit(Sighting(badge=d.id, receiver=self.receiver, rssi=float(rssi), at=at))
            else:
                self._reject(device.address, d, at)

    def _reject(self, address: str, r: Rejection, at: float) -> None:
        self._rejected += 1
        key = (address, f"{r.kind}_{r.reason}")
        last = self._reject_last.get(key)
        if last is not None and at - last[0] < self._reject_interval_s:
            self._reject_last[key] = (last[0], last[1] + 1)
            return
        suppressed = 0 if last is None else last[1]
        if len(self._reject_last) >= _REJECT_KEYS_MAX:
            self._reject_last.clear()  # a spoofing storm must not grow memory
        self._reject_last[key] = (at, 0)
        self._log.warning("ble_frame_rejected", device=address, reason=key[1], detail=r.detail, suppressed=suppressed)
        self._emit(Rejected(source=f"ble:{self.receiver}:{address}", reason=key[1], detail=r.detail))


def _describe(exc: BaseException) -> str:
    args: Any = getattr(exc, "args", ())
    return f"{type(exc).__name__}: {' '.join(str(a) for a in args) or '-'}"

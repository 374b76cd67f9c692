"""Errors of the BLE driver. Third-party (bleak, D-Bus) errors are translated into these."""

from __future__ import annotations

from enum import StrEnum


class ReceiverDownReason(StrEnum):
    """Why a BLE receiver (this box's adapter) is not scanning."""

    ADAPTER_MISSING = "adapter_missing"
    """BlueZ has no such adapter (unplugged, removed, wrong name in config)."""
    ADAPTER_REMOVED = "adapter_removed"
    """The adapter disappeared while scanning."""
    POWERED_OFF = "powered_off"
    """The adapter exists but is not powered (rfkill, `bluetoothctl power off`)."""
    BLUEZ_UNAVAILABLE = "bluez_unavailable"
    """No system D-Bus or no bluetoothd on it."""
    TASK_FAILED = "task_failed"
    """The source itself failed (a defect, not the adapter); the daemon restarts it."""
    SCAN_FAILED = "scan_failed"
    """BlueZ refused to start (or keep) discovery."""


class BleError(Exception):
    """Base of the BLE driver's errors."""


class ReceiverDown(BleError):
    """The receiver cannot scan right now; the source reports it and retries with backoff."""

    def __init__(self, receiver: str, adapter: str, reason: ReceiverDownReason, detail: str = "") -> None:
        self.receiver = receiver
        self.adapter = adapter
        self.reason = reason
        self.detail = detail
        hint = {
            ReceiverDownReason.ADAPTER_MISSING: "check `bluetoothctl list` and the adapter name in the config",
            ReceiverDownReason.ADAPTER_REMOVED: "check the USB dongle / `dmesg`; scanning resumes when it returns",
            ReceiverDownReason.POWERED_OFF: "power it on (`rfkill unblock bluetooth`, `bluetoothctl power on`)",
            ReceiverDownReason.BLUEZ_UNAVAILABLE: "check that dbus and bluetoothd run (`systemctl status bluetooth`)",
            ReceiverDownReason.SCAN_FAILED: "see the BlueZ detail; power-cycling the adapter usually clears it",
        }[reason]
        super().__init__(f"ble receiver {receiver} ({adapter}): {reason}: {detail or '-'}; {hint}")


class BadgeConfigError(BleError, ValueError):
    """A badge entry in the configuration is malformed; `place` names it."""

    def __init__(self, place: str, reason: str) -> None:
        self.place = place
        self.reason = reason
        super().__init__(f"{place}: {reason}")

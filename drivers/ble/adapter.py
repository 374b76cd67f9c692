"""Watch one BlueZ adapter on the system D-Bus: is it there, powered, and still there?

bleak has no public "adapter went away" notification: a running BleakScanner simply
stops hearing anything when the USB dongle is pulled, which looks exactly like an empty
room. Silence is not presence, so the source watches the adapter object itself through
dbus_fast (bleak's own D-Bus library) and reports loss as a `ReceiverDown`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError

from drivers.ble.errors import ReceiverDown, ReceiverDownReason

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
_OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_DBUS = "org.freedesktop.DBus"
_CALL_TIMEOUT_S = 5.0

# Errors dbus_fast raises for "no bus / cannot talk to it"; translated at this boundary.
# (InvalidAddressError and AuthError derive from ValueError; listed for the reader.)
BUS_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, DBusError, ValueError, AuthError)
_CALL_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *BUS_ERRORS)


class AdapterWatch:
    """A D-Bus connection that checks an adapter and then waits for it to go away.

    Use `await AdapterWatch.open(receiver, adapter)`; it raises `ReceiverDown` when the
    adapter is missing or unpowered. `await watch.lost()` returns (reason, detail) when
    the adapter is removed, powered off, bluetoothd leaves the bus, or the bus drops.
    """

    def __init__(self, receiver: str, adapter: str, bus: MessageBus) -> None:
        self.receiver = receiver
        self.adapter = adapter
        self.path = f"/org/bluez/{adapter}"
        self._bus = bus
        self._lost: asyncio.Future[tuple[ReceiverDownReason, str]] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, receiver: str, adapter: str) -> AdapterWatch:
        """Connect, subscribe, then check the adapter (subscribing first: no missed removal)."""
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except _CALL_ERRORS as exc:
            raise ReceiverDown(receiver, adapter, ReceiverDownReason.BLUEZ_UNAVAILABLE, repr(exc)) from exc
        watch = cls(receiver, adapter, bus)
        try:
            await watch._subscribe()
            await watch._check()
        except BaseException:
            watch.close()
            raise
        return watch

    async def lost(self) -> tuple[ReceiverDownReason, str]:
        """Wait until the adapter is lost; returns why."""
        disconnected = asyncio.ensure_future(self._bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
        try:
            done, _ = await asyncio.wait({self._lost, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnected.cancel()
        if self._lost in done:
            return self._lost.result()
        return ReceiverDownReason.BLUEZ_UNAVAILABLE, "system D-Bus connection dropped"

    def close(self) -> None:
        """Drop the D-Bus connection (idempotent)."""
        if not self._lost.done():
            self._lost.cancel()
        with contextlib.suppress(*BUS_ERRORS):
            self._bus.disconnect()

    async def _call(self, msg: Message) -> Message:
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                reply = await self._bus.call(msg)
        except _CALL_ERRORS as exc:
            raise ReceiverDown(self.receiver, self.adapter, ReceiverDownReason.BLUEZ_UNAVAILABLE, repr(exc)) from exc
        if reply is None:
            raise ReceiverDown(self.receiver, self.adapter, ReceiverDownReason.BLUEZ_UNAVAILABLE, "no reply")
        return reply

    async def _subscribe(self) -> None:
        self._bus.add_message_handler(self._on_message)
        rules = (
            f"type='signal',sender='{BLUEZ}',interface='{_OBJECT_MANAGER}',member='InterfacesRemoved'",
            f"type='signal',sender='{BLUEZ}',interface='{_PROPERTIES}',member='PropertiesChanged',path='{self.path}'",
            f"type='signal',sender='{_DBUS}',interface='{_DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'",
        )
        for rule in rules:
            reply = await self._call(
                Message(
                    destination=_DBUS,
                    path="/org/freedesktop/DBus",
                    interface=_DBUS,
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
            if reply.message_type == MessageType.ERROR:
                raise ReceiverDown(
                    self.receiver, self.adapter, ReceiverDownReason.BLUEZ_UNAVAILABLE, f"AddMatch: {reply.body}"
                )

    async def _check(self) -> None:
        reply = await self._call(
            Message(
                destination=BLUEZ,
                path=self.path,
                interface=_PROPERTIES,
                member="Get",
                signature="ss",
                body=[ADAPTER_IFACE, "Powered"],
            )
        )
        if reply.message_type == MessageType.ERROR:
            name = reply.error_name or ""
            reason = (
                ReceiverDownReason.BLUEZ_UNAVAILABLE
                if name.endswith(("ServiceUnknown", "NameHasNoOwner"))
                else ReceiverDownReason.ADAPTER_MISSING
            )
            raise ReceiverDown(self.receiver, self.adapter, reason, f"{name}: {reply.body}")
        powered = reply.body[0].value if reply.body and isinstance(reply.body[0], Variant) else None
        if powered is not True:
            raise ReceiverDown(self.receiver, self.adapter, ReceiverDownReason.POWERED_OFF, f"Powered={powered!r}")

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or self._lost.done():
            return
        found = self._loss_in(msg)
        if found is not None:
            self._lost.set_result(found)

    def _loss_in(self, msg: Message) -> tuple[ReceiverDownReason, str] | None:
        body: list[Any] = msg.body
        if msg.member == "InterfacesRemoved" and msg.interface == _OBJECT_MANAGER:
            if body and body[0] == self.path and ADAPTER_IFACE in body[1]:
                return ReceiverDownReason.ADAPTER_REMOVED, f"{self.path} removed"
        elif msg.member == "PropertiesChanged" and msg.path == self.path:
            if body and body[0] == ADAPTER_IFACE and "Powered" in body[1]:
                if body[1]["Powered"].value is not True:
                    return ReceiverDownReason.POWERED_OFF, "Powered changed to false"
        elif msg.member == "NameOwnerChanged" and body and body[0] == BLUEZ and not body[2]:
            return ReceiverDownReason.BLUEZ_UNAVAILABLE, "bluetoothd left the bus"
        return None

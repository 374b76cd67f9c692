"""A TCP link in front of a simulated device that can misbehave the way real field links do.

`FaultyLink(target_port)` listens on 127.0.0.1 (port 0: read `.port` after `start()`) and
forwards bytes both ways to the device. Its mode decides what a client sees:

- `"pass"`: a plain forwarder.
- `"hangup"`: every request is read and the connection is then closed without an answer
  (a gateway or converter that resets its socket on each frame).
- `"refuse"`: the listening socket is closed, so connects are refused; `set_mode("pass")`
  listens again on the same port.
- `"silent"`: requests are read and never answered; the connection stays open.

The acceptance run that found the gateway's crash loop used devices like these; tests put
one in front of a gas detector or the relay module to prove a device fault stays that
device's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["pass", "hangup", "refuse", "silent"]

_CHUNK = 4096


class FaultyLink:
    """A forwarder with fault modes; every connection is closed on `stop()`."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        """The bound port once started (kept across "refuse" so the gateway's config stays right)."""
        self.mode: Mode = "pass"
        self.hangups = 0
        """Connections closed by "hangup" after a request (a test waits on this, not on time)."""
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._close_listener()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def set_mode(self, mode: Mode) -> None:
        """Change the mode; open connections are dropped so the new mode applies to the next request."""
        self.mode = mode
        for t in list(self._conns):
            t.cancel()
        if mode == "refuse":
            await self._close_listener()
        else:
            await self.start()

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            if self.mode == "pass":
                await self._forward(reader, writer)
            elif self.mode == "silent":
                while await reader.read(_CHUNK):
                    pass
            else:  # hangup: read one request, answer nothing, close
                if await reader.read(_CHUNK):
                    self.hangups += 1
        except (ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()

        pipes = {asyncio.create_task(pipe(reader, up_w)), asyncio.create_task(pipe(up_r, writer))}
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this connection is cancelled (mode change, stop)
            for t in pipes:
                t.cancel()
            for t in pipes:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            up_w.close()
            with contextlib.suppress(Exception):
                await up_w.wait_closed()


__all__ = ["FaultyLink", "Mode"]

"""What systemd does with NOTIFY_SOCKET, for the sd_notify and start-up tests."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """What systemd does: bind a datagram socket and collect (time, line) for every notification."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.got += [(now, line) for line in data.decode().splitlines()]

    def lines(self) -> list[str]:
        return [line for _, line in self.got]

    def times(self, line: str) -> list[float]:
        return [t for t, x in self.got if x == line]

    def close(self) -> None:
        self._stop = True
        self._t.join(2)
        self.sock.close()

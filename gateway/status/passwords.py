"""Password hashes that grow stronger without touching the config: upgraded at the next login.

The config file holds each user's scrypt hash and the daemon never writes it. When a user logs
in with a hash weaker than the current cost (SCRYPT_N), the password is hashed again at the
current cost and kept here, in the state directory, as {user: {"from": config_hash, "to":
new_hash}}. It is used only while the config still holds the same "from" hash: an admin who
sets a new password in the config replaces it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import structlog

from gateway.status.auth import SCRYPT_N, User, hash_password

log = structlog.get_logger("passwords")


class StateDirUpgrades:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: dict[str, dict[str, str]] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                self._map = {u: v for u, v in raw.items() if isinstance(v, dict) and {"from", "to"} <= set(v)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error("password_upgrades_unreadable", path=str(path), error=str(exc),
                      fix="the config's hashes are used; they are upgraded again at the next login")  # fmt: skip

    def apply(self, users: Mapping[str, User]) -> dict[str, User]:
        """The users with their upgraded hash where the config still holds the hash it replaced."""
        out = dict(users)
        for name, u in users.items():
            up = self._map.get(name)
            if up is not None and up["from"] == u.password_hash:
                out[name] = replace(u, password_hash=up["to"])
        return out

    def upgrade(self, config_hash: str, user: User, password: str) -> User:
        """Hash `password` at the current cost, keep it (atomically), and return the upgraded user."""
        new = hash_password(password)
        self._map[user.user] = {"from": config_hash, "to": new}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._map, sort_keys=True), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        log.info("password_hash_upgraded", user=user.user, n=SCRYPT_N)
        return replace(user, password_hash=new)

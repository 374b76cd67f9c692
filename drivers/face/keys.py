"""Files of the face driver: terminal keys, and the persisted replay state.

Key files:
- ``hmac-sha256``: the shared secret as hex text (>= 32 bytes, i.e. >= 64 hex digits;
  surrounding whitespace ignored), e.g. made with ``openssl rand -hex 32``.
- ``ed25519``: the terminal's *public* key as PEM (``-----BEGIN PUBLIC KEY-----``), e.g.
  ``openssl pkey -in terminal.key -pubout``. The private key stays on the terminal.
"""

from __future__ import annotations

import binascii
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivers.face.codec import MIN_HMAC_KEY_BYTES, Alg, decode_last_seq, encode_last_seq
from drivers.face.errors import KeyFileError, SeqStateError

_MAX_KEY_FILE = 16 * 1024


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist", "check faces.terminals.*.key_file, or create the key") from None
    except IsADirectoryError:
        raise KeyFileError(path, "is a directory", "point key_file at the key file itself") from None
    except PermissionError:
        raise KeyFileError(path, "is not readable by this user", "chmod 0640 and chgrp to the service group") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(path, f"is larger than {_MAX_KEY_FILE} bytes", "this is not a key file")
    return data


def _load_hmac(path: Path, data: bytes) -> bytes:
    fix = f"write a new secret with `openssl rand -hex 32 > {path}` and load it into the terminal"
    try:
        text = data.decode("ascii").strip()
        key = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(path, "is not hex text (an HMAC secret is expected as hex digits)", fix) from None
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise KeyFileError(
            path, f"HMAC secret is {len(key)} bytes, need at least {MIN_HMAC_KEY_BYTES} (64 hex digits)", fix
        )
    return key


def _load_ed25519(path: Path, data: bytes) -> bytes:
    fix = f"export the terminal's public key as PEM: `openssl pkey -in terminal.key -pubout > {path}`"
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            path, "holds a PRIVATE key; the gateway needs only the terminal's public key", fix
        )
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        raise KeyFileError(path, "is not a PEM public key (no '-----BEGIN PUBLIC KEY-----')", fix)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise KeyFileError(path, f"bad PEM ({exc})", fix) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(path, f"is a {type(key).__name__}, not an Ed25519 public key", fix)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_terminal_key(path: str | os.PathLike[str], alg: Alg) -> bytes:
    """Read one terminal's key: the HMAC secret, or the raw 32-byte Ed25519 public key.

    Raises KeyFileError naming the file, the problem and the fix.
    """
    p = Path(path)
    data = _read(p)
    if alg == "hmac-sha256":
        return _load_hmac(p, data)
    if alg == "ed25519":
        return _load_ed25519(p, data)
    raise KeyFileError(p, f"unknown algorithm {alg!r}", "use alg = 'hmac-sha256' or 'ed25519'")


class SeqStore:
    """The replay state on disk: a small JSON object, replaced atomically on every save.

    Lose it and every terminal's next event is accepted once, if its time is within the
    skew: the skew bounds how old a replayed event can be.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, int]:
        """The saved state; empty if the file does not exist yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SeqStateError(self.path, f"cannot read ({exc.strerror})") from exc
        try:
            return decode_last_seq(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise SeqStateError(self.path, f"corrupt ({exc})") from None

    def save(self, last_seq: Mapping[str, int]) -> None:
        """Write to a temporary file beside it, fsync, rename: never a half-written file."""
        data = encode_last_seq(last_seq)
        try:
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise SeqStateError(self.path, f"cannot write ({exc.strerror})") from exc

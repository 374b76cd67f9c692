"""Loading the central ledger's Ed25519 public key (start-up I/O, errors name the file and the fix)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from drivers.ledger.errors import LedgerKeyError

_PUBOUT = "export the public half with `openssl pkey -in LEDGER_KEY.pem -pubout -out ledger.pub.pem`"


def load_ledger_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM (SubjectPublicKeyInfo) or a raw 32-byte file.

    Raises `LedgerKeyError` naming the file, what is wrong and how to fix it.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise LedgerKeyError(
            p, "file not found", "point the ledger public key setting at the ledger's Ed25519 public key file"
        ) from exc
    except OSError as exc:
        raise LedgerKeyError(p, f"cannot read it ({exc.strerror})", "check the path and its permissions") from exc

    if data.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in data:
            # A private key on the gateway would let anyone with the disk forge permits.
            raise LedgerKeyError(p, "it holds a PRIVATE key", f"give the gateway only the public key: {_PUBOUT}")
        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise LedgerKeyError(p, f"not a readable PEM public key ({exc})", _PUBOUT) from exc
        if not isinstance(key, Ed25519PublicKey):
            raise LedgerKeyError(
                p, f"it is a {type(key).__name__}, not an Ed25519 key", "the ledger signs permits with Ed25519"
            )
        return key
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    raise LedgerKeyError(
        p,
        f"{len(data)} bytes, neither PEM nor a raw 32-byte Ed25519 public key",
        f"provide a '-----BEGIN PUBLIC KEY-----' PEM file ({_PUBOUT}) or the raw 32 key bytes",
    )

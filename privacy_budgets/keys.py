"""A site's Ed25519 signing key: created once in its key folder, readable only by its owner.

A site keeps it in a key folder apart from the ledger (``federation/site/ledger_keys.py``);
``Ledger.open`` without ``key_path`` still uses ``<ledger>.key`` for a bare ledger file.

Public keys travel as hex of the 32 raw bytes; people compare fingerprints,
``ed25519:SHA256:<hex>``, like SSH's.

>>> key = Ed25519PrivateKey.generate()
>>> public = public_hex(key)
>>> signature = sign(key, b"entry")
>>> verify_signature(public_key=public, signature=signature, message=b"entry")
True
>>> verify_signature(public_key=public, signature=signature, message=b"edited")
False
>>> fingerprint(public).startswith("ed25519:SHA256:")
True
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from privacy_budgets.errors import LedgerError


def default_key_path(ledger_path: Path) -> Path:
    """Where the key of the ledger at ``ledger_path`` is, when nobody says: the site's
    key folder beside its state folder (``<state>.keys/ledger.key``, as a simulated site
    keeps it, or ``keys/ledger.key`` beside the node.toml of ``workbench node init``),
    else ``<ledger>.key`` (a bare ledger file, or one made before key folders)."""
    ledger_path = Path(ledger_path)
    state = ledger_path.parent
    candidates = [state.with_name(f"{state.name}.keys") / "ledger.key"]
    if (state.parent / "node.toml").exists():
        candidates.append(state.parent / "keys" / "ledger.key")
    return next((c for c in candidates if c.exists()), Path(f"{ledger_path}.key"))


def load_or_create_key(*, key_path: Path, create: bool) -> Ed25519PrivateKey:
    """Read the PEM key at ``key_path``; make one (mode 0600) when allowed and absent."""
    if key_path.exists():
        return load_key(key_path=key_path)
    if not create:
        raise LedgerError(
            f"The ledger's signing key must exist to write to it; none at {key_path}. "
            "Pass key_path= to the site's key, or verify read-only with Ledger.verify_file."
        )
    if not key_path.parent.exists():  # a key folder: only its owner may enter it
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(key_path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    # Write under a private name, then link into place: a second process creating the
    # same ledger at the same moment either wins the link or reads the winner's key.
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, key_path)
        except FileExistsError:
            return load_key(key_path=key_path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def load_key(*, key_path: Path) -> Ed25519PrivateKey:
    """Read a PEM (PKCS8) Ed25519 private key, warning when others may read it."""
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"The ledger key {key_path} can be read by others (mode {oct(mode & 0o777)}); "
            f"anyone who reads it can sign entries as this site. Fix: chmod 600 {key_path}.",
            stacklevel=3,
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise LedgerError(
            f"A ledger key must be an unencrypted PEM (PKCS8) Ed25519 private key; "
            f"{key_path} is not ({err}). Point key_path= at the site's ledger key."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(
            f"A ledger key must be Ed25519; {key_path} holds a {type(key).__name__}. "
            "Point key_path= at the site's ledger key."
        )
    return key


def public_hex(key: Ed25519PrivateKey) -> str:
    """The public half as hex of its 32 raw bytes."""
    raw = key.public_key().public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
    return raw.hex()


def fingerprint(public_key_hex: str) -> str:
    """``ed25519:SHA256:<hex>`` of the raw public key."""
    return "ed25519:SHA256:" + hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def matches(*, expected: str, public_key_hex: str) -> bool:
    """Whether ``expected`` (a fingerprint, raw hex or PEM) names ``public_key_hex``."""
    expected = expected.strip()
    if expected.startswith("ed25519:SHA256:"):
        return expected.lower() == fingerprint(public_key_hex).lower()
    if expected.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_public_key(expected.encode())
        except ValueError:
            return False
        if not isinstance(loaded, Ed25519PublicKey):
            return False
        raw = loaded.public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
        return raw.hex() == public_key_hex
    return expected.lower() == public_key_hex


def rotation_message(*, ledger_id: str, old_public_key: str, new_public_key: str) -> bytes:
    """What the new key signs when it takes over a ledger (proof that its holder has it;
    bound to one ledger, so the proof cannot be copied into a forged one)."""
    return f"privacy_budgets.rotate_key/1\n{ledger_id}\n{old_public_key}\n{new_public_key}".encode()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """Hex of the Ed25519 signature over ``message``."""
    return key.sign(message).hex()


def verify_signature(*, public_key: str, signature: str, message: bytes) -> bool:
    """Whether ``signature`` (hex) over ``message`` verifies under ``public_key`` (hex)."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True

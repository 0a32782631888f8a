"""The node's identity: an ECDSA P-384 key pair in OpenSSH format.

Flower's SuperLink authenticates SuperNodes by this key (``flwr supernode register
KEY.pub``; the SuperNode signs with ``--auth-supernode-private-key``). The private
key never leaves the site; the public key is what the coordinator registers.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import BadInput

PRIVATE_KEY_MODE = 0o600


class NodeKeyError(BadInput, ValueError):
    """A node key file is missing, unreadable or of the wrong kind; the message says the fix."""


def public_key_path(private_key: Path) -> Path:
    """Where the public key of ``private_key`` lives: the same path plus ``.pub``."""
    return Path(f"{private_key}.pub")


def generate_node_keys(*, private_key: Path, comment: str = "", overwrite: bool = False) -> str:
    """Write a new key pair (private key mode 0600) and return the public key line.

    Refuses to replace an existing key unless ``overwrite``: a node's key is its
    registered identity, and replacing it locks the node out until re-registered.
    """
    private_key = Path(private_key)
    public = public_key_path(private_key)
    if not overwrite and (private_key.exists() or public.exists()):
        raise FileExistsError(
            f"{private_key} (or its .pub) already exists: it may be the key the coordinator registered. "
            "Keep it, or pass overwrite=True (--force) and register the new public key."
        )
    key = ec.generate_private_key(ec.SECP384R1())
    private_bytes = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.OpenSSH,
        encryption_algorithm=serialization.NoEncryption(),
    )
    line = (
        key.public_key()
        .public_bytes(encoding=serialization.Encoding.OpenSSH, format=serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    if comment:
        line = f"{line} {comment}"
    if not private_key.parent.exists():  # the key folder: owner-only (ledger_keys.py)
        private_key.parent.mkdir(mode=0o700, parents=True)
        os.chmod(private_key.parent, 0o700)
    if overwrite and private_key.exists():
        private_key.unlink()
    # Created with mode 0600 from the start: never readable by others, not even briefly.
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_bytes)
    public.write_text(line + "\n", encoding="ascii")
    return line


def read_public_key_line(*, private_key: Path) -> str:
    """The public key line of a node (checked to match its private key)."""
    key = load_private_key(private_key=private_key)
    public = public_key_path(private_key)
    if not public.is_file():
        raise NodeKeyError(
            f"{public}: the node's public key is missing. Fix: run `workbench node init` again "
            "with --force to make a new pair, and register the new public key."
        )
    line = public.read_text(encoding="ascii", errors="replace").strip()
    try:
        loaded = serialization.load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as err:
        raise NodeKeyError(
            f"{public}: not an OpenSSH public key ({err}). Fix: restore it from the private key "
            "or make a new pair with `workbench node init --force`."
        ) from None
    mine = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    theirs = loaded.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if mine != theirs:
        raise NodeKeyError(
            f"{public} does not belong to {private_key}. Fix: restore the matching pair, or make "
            "a new one with `workbench node init --force` and register its public key."
        )
    return line


def load_private_key(*, private_key: Path) -> ec.EllipticCurvePrivateKey:
    """The node's private key; refuses a missing file, another curve, or a key others can read."""
    private_key = Path(private_key)
    if not private_key.is_file():
        raise NodeKeyError(
            f"{private_key}: the node's private key is missing. Fix: make one with "
            "`workbench node init` (or point [node] private_key at it)."
        )
    mode = private_key.stat().st_mode & 0o777
    if mode & 0o077:
        raise NodeKeyError(
            f"{private_key}: the private key is readable by others (mode {mode:o}). Fix: chmod 600 {private_key}."
        )
    try:
        key = serialization.load_ssh_private_key(private_key.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise NodeKeyError(
            f"{private_key}: not an unencrypted OpenSSH private key ({err}). "
            "Fix: make a new pair with `workbench node init --force`."
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise NodeKeyError(
            f"{private_key}: Flower's node authentication needs an ECDSA P-384 key; this is "
            f"{type(key).__name__}. Fix: make one with `workbench node init --force`."
        )
    return key

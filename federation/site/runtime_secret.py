"""The node's Runtime API: loopback only, and tasks handed out only to who holds its secret.

The SuperNode hands each message to whoever asks its Runtime API (``clientappio``) for a
task: without more, any local user of the node's machine could take the hospital's
tasks (and read the coordinator's messages, or answer them). Flower 1.42 can demand an
HMAC of each task request, keyed by a shared secret file (``--superexec-auth-secret-file``,
marked experimental by Flower, honoured under ``--isolation process``, which the node
uses): the SuperNode and the site executor both read ``runtime-api.secret`` in the
site's state folder, a random secret readable by the node's own user only (0600).

``runtime_api_problem`` is the rule both ``node check`` and ``node start`` apply: the
address must be loopback, and the secret, once made, a regular file of the node's own
user that nobody else can read. ``ensure_secret`` makes it at first start.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from pathlib import Path

from federation.errors import BadInput

SECRET_NAME = "runtime-api.secret"
SECRET_BYTES = 32


class RuntimeApiUnsafe(BadInput, ValueError):
    """The node's Runtime API address or secret breaks the node's rule (loopback, 0600)."""


def secret_path(state_dir: Path) -> Path:
    """Where the node keeps the secret of its Runtime API."""
    return Path(state_dir) / SECRET_NAME


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_problem(address: str, *, config_path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the Runtime API address is not loopback."""
    host = address.rpartition(":")[0]
    if is_loopback_host(host):
        return None
    port = address.rpartition(":")[2]
    return (
        f"[node] clientappio_address {address} is not a loopback address: the SuperNode's Runtime API would hand "
        "the site's tasks to other machines.",
        f'set clientappio_address = "127.0.0.1:{port}" in {config_path}.',
    )


def secret_problem(path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the secret exists but others could read or replace it.
    A missing secret is no problem: ``node start`` makes it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return (
            f"the Runtime API secret {path} is not a regular file (a link or a folder).",
            f"remove it (rm -r {path}); `workbench node start` makes a new one.",
        )
    if info.st_uid != os.geteuid():
        return (
            f"the Runtime API secret {path} belongs to user id {info.st_uid}, not to the node's user ({os.geteuid()}).",
            f"remove it (rm {path}) as its owner; `workbench node start` makes a new one.",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (
            f"the Runtime API secret {path} is readable or writable by others (mode {mode:o}): another local user "
            "could take the site's tasks.",
            f"chmod 600 {path}",
        )
    if info.st_size == 0:
        return (
            f"the Runtime API secret {path} is empty.",
            f"remove it (rm {path}); `workbench node start` makes a new one.",
        )
    return None


def runtime_api_problem(*, address: str, state_dir: Path, config_path: Path) -> tuple[str, str] | None:
    """The first way the node's Runtime API breaks the rule, as (what, fix); None when safe."""
    return address_problem(address, config_path=config_path) or secret_problem(secret_path(state_dir))


def ensure_secret(*, state_dir: Path, address: str, config_path: Path) -> Path:
    """The node's Runtime API secret, made (0600, random) when missing; RuntimeApiUnsafe
    when the address is not loopback or the secret is not the node's own."""
    problem = runtime_api_problem(address=address, state_dir=state_dir, config_path=config_path)
    if problem is not None:
        raise RuntimeApiUnsafe(f"{problem[0]} Nothing was started. Fix: {problem[1]}")
    path = secret_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start (no moment where others could read it), never over a file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(SECRET_BYTES).encode())
    return path


def read_secret(path: Path) -> bytes:
    """The secret's exact bytes (Flower reads the file the same way)."""
    return Path(path).read_bytes()

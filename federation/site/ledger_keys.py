"""The site's key folder and its owner-only state folder.

The ledger's signing key lives in the key folder (``[node] key_dir`` in node.toml,
mode 0700), never in the state folder beside the ledger: whoever can write the state
folder (a backup job, a careless share, the node's data mount) must not also be able
to sign a history of their own. The state folder and every file in it are created
owner-only (0700 folders, 0600 files; the node runs with umask 077).

Migration: a ledger made before key folders kept its key at
``<state>/ledger.sqlite.key``. The first time the site opens its ledger (``node
start``, ``node check``, a task) that key is moved into the key folder as
``ledger.key``, unchanged: the ledger keeps verifying and writing with the key it was
created with. By hand, the same move is
``mkdir -m 700 KEY_DIR && mv STATE/ledger.sqlite.key KEY_DIR/ledger.key``.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from federation.site.site_config import SiteConfig

OWNER_ONLY_UMASK = 0o077


def private_folder(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700; an existing folder is left as it
    is (``loose_modes`` reports it, with the fix)."""
    path = Path(path)
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask
    return path


def move_legacy_key(site: SiteConfig) -> Path | None:
    """Move a ledger key left in the state folder into the key folder; returns the old
    path when one was moved. Safe when several processes of the node race to do it."""
    legacy, new = site.legacy_key_path, site.ledger_key_path
    if not legacy.exists():
        return None
    private_folder(new.parent)
    try:
        os.link(legacy, new)
    except FileExistsError:
        pass  # another process moved it first, or a key is already there: compared below
    except OSError:  # another file system: copy, owner-only, then remove the old one
        tmp = new.with_name(f".{new.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(legacy.read_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, new)
    try:
        same = new.read_bytes() == legacy.read_bytes()
    except FileNotFoundError:
        return legacy  # another process finished the move
    if not same:
        from privacy_budgets.errors import LedgerError

        raise LedgerError(
            f"A site has one ledger key; there are two: {legacy} (the ledger's old place) and {new} (the key "
            f"folder), and they differ. Nothing was moved. Fix: keep the one the ledger was created with "
            f"(`workbench budget verify --ledger {site.ledger_path}` prints its fingerprint), move the other out "
            "of both folders, and start again."
        )
    os.chmod(new, 0o600)
    legacy.unlink(missing_ok=True)
    return legacy


def open_site_ledger(site: SiteConfig, *, create: bool = True):
    """The site's ledger, with its key from the key folder (a legacy key moved there first)."""
    from privacy_budgets import Ledger

    move_legacy_key(site)
    if create:
        private_folder(site.state_dir)
    return Ledger.open(site.ledger_path, site_id=site.site_id, key_path=site.ledger_key_path, create=create)


def loose_modes(folder: Path, *, limit: int = 5) -> list[tuple[Path, int]]:
    """Up to ``limit`` paths under ``folder`` (itself included) that group or others may
    read, write or enter, with their modes."""
    found: list[tuple[Path, int]] = []
    folder = Path(folder)
    if not folder.exists():
        return found
    for path in (folder, *sorted(folder.rglob("*"))):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # removed meanwhile (a lock file, a cache entry)
        if stat.S_ISLNK(mode):
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            found.append((path, stat.S_IMODE(mode)))
            if len(found) >= limit:
                break
    return found


def copy_owner_only(source: Path, target: Path) -> None:
    """Copy a file keeping it owner-only (for tests and tools that stage state)."""
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)

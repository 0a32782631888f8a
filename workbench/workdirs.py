"""A new working folder for every run of a notebook or a study.

A simulated federation keeps its hospitals' ledgers in its working folder, so a
notebook that reused one folder would find its project already spent on the second
run. Each run gets its own folder under one root (``runs/``, ignored by git).

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> first, second = fresh_workdir("quickstart", root=root), fresh_workdir("quickstart", root=root)
>>> first != second and first.parent == second.parent and not any(first.iterdir())
True
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

__all__ = ["fresh_workdir"]


def fresh_workdir(name: str, *, root: str | Path = "runs") -> Path:
    """Make and return an empty folder ``root/name/<UTC time>-<random>``."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"name must be one plain folder name, like 'quickstart'; got {name!r}.")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = Path(root) / name / f"{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)  # never an existing folder: a collision is an error, not a reuse
    return folder

"""Write a per-site folder (site files + metadata) without clobbering someone else's data.

Writing the same content again is a no-op, so re-running a command with the same
seed is safe. A folder that holds *different* site files (changed content, or
sites that are not part of the new data set) is refused unless overwrite=True;
then the stale site files are removed, so `load_sites` never mixes two data sets.
"""

from __future__ import annotations

import os
from pathlib import Path

from federation.data.loader import NOT_SITE_FILES, SITE_SUFFIXES


def write_site_folder(*, out: Path, files: dict[str, bytes], overwrite: bool) -> Path:
    """Write `files` (name -> bytes) into `out`, creating it; returns `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; choose a folder path for the output")
    conflicts = _conflicts(out=out, files=files) if out.is_dir() else []
    if conflicts and not overwrite:
        raise FileExistsError(
            f"{out} already holds different site data ({'; '.join(conflicts[:3])}"
            f"{'; ...' if len(conflicts) > 3 else ''}); pass overwrite=True (--overwrite) to replace it, "
            "or choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for stale in _site_files(out):
            if stale.name not in files:
                stale.unlink()
    for name, content in files.items():
        target = out / name
        if target.is_file() and target.read_bytes() == content:
            continue
        partial = out / f".{name}.partial"
        partial.write_bytes(content)
        os.replace(partial, target)  # atomic: a reader never sees half a file
    return out


def _site_files(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and (p.suffix.lower() in SITE_SUFFIXES or p.name in NOT_SITE_FILES)
    ]


def _conflicts(*, out: Path, files: dict[str, bytes]) -> list[str]:
    found = []
    for existing in _site_files(out):
        if existing.name not in files:
            if existing.suffix.lower() in SITE_SUFFIXES:
                found.append(f"{existing.name} is not part of the new data")
        elif existing.read_bytes() != files[existing.name]:
            found.append(f"{existing.name} differs")
    # Site files first: they are what a person cares about losing.
    return sorted(found, key=lambda text: not text.split(" ")[0].lower().endswith(SITE_SUFFIXES))

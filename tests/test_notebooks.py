"""Every notebook runs top to bottom on a fresh kernel, as its reader would run it."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "hospital-workbench"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; strip them"
    )
    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    # The kernel imports this checkout (a worktree's code, not the one installed editable).
    path_entries = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    client.execute(env={**os.environ, "PYTHONPATH": os.pathsep.join(path_entries)})
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    displayed = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert any("text/html" in o.get("data", {}) for o in displayed), "a result rendered as HTML"
    assert any("image/png" in o.get("data", {}) for o in displayed), "a plot was drawn"

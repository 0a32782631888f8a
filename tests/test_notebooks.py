"""Every notebook runs top to bottom on a fresh kernel, as its reader would run it, and
runs again and again in the same checkout (what everyone does after changing a cell).

All notebooks share one copy of the notebooks folder for all their runs, taken in the
order a reader would (01, 02, 03, 04, then all again): whatever a run leaves behind
is there for the next one. A shell cell that fails is an error (the notebooks' shell
cells are ``%%bash``, which raises on a non-zero exit), so it fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "hospital-workbench"
RUNS = 3
ORDER = [(run, path) for run in range(1, RUNS + 1) for path in NOTEBOOKS]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """One copy of the notebooks folder that every run of every notebook uses."""
    folder = tmp_path_factory.mktemp("checkout") / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder)
    return folder


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
            f"{path.name} is committed with outputs; strip them"
        )


def test_no_notebook_hides_a_shell_command_from_failure():
    # `!cmd` ignores the command's exit code; `%%bash` cells raise on it.
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                bang = [line for line in cell.source.splitlines() if line.lstrip().startswith("!")]
                assert not bang, f"{path.name}: {bang[0]!r} would pass even if it failed; use a %%bash cell"


@pytest.mark.slow
@pytest.mark.parametrize(("run", "path"), ORDER, ids=[f"{p.stem}-run{r}" for r, p in ORDER])
def test_notebook_runs_top_to_bottom_again_and_again(run, path, checkout):
    notebook = nbformat.read(checkout / path.name, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(checkout)}})
    # The kernel imports this checkout (a worktree's code, not the one installed editable).
    path_entries = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    client.execute(env={**os.environ, "PYTHONPATH": os.pathsep.join(path_entries)})
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    displayed = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert any("text/html" in o.get("data", {}) for o in displayed), "a result rendered as HTML"
    assert any("image/png" in o.get("data", {}) for o in displayed), "a plot was drawn"

    # What the runs leave beside the notebooks lives in runs/, which git ignores.
    left = {p.name for p in checkout.iterdir()} - {p.name for p in NOTEBOOKS}
    assert left <= {"runs"}, f"a notebook run left {sorted(left - {'runs'})} beside the notebooks"
    ignored = subprocess.run(["git", "check-ignore", "-q", "notebooks/runs/anything"], cwd=ROOT)
    assert ignored.returncode == 0, "notebooks/runs/ must be ignored by git"

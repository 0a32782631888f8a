"""A project whose earlier spending leaves no room is refused in one paragraph, with
its own numbers, in a real Jupyter kernel: the day-one re-run of a notebook."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SETUP = """
from privacy_budgets import gaussian_event
from workbench import Workbench

wb = Workbench.simulate(sites=2, rows=300, seed=3, workdir="federation")
wb.allocate(project="quickstart", epsilon=1.0)
for site in wb.sites["site"]:   # an earlier run of the notebook spent most of it
    with wb.ledger(site) as ledger:
        ledger.commit(ledger.reserve(dataset=site, project="quickstart", actor="an earlier run",
                                     purpose="earlier study", event=gaussian_event(noise_multiplier=4.4)))
before = wb.budget().set_index(["site", "project"])["spent"].to_dict()
"""


def run_cells(tmp_path: Path, *sources: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(
        notebook,
        kernel_name="hospital-workbench",
        timeout=300,
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    )
    return notebook


def error_of(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return errors[0]


def test_plan_and_train_on_a_spent_project_read_as_one_paragraph(tmp_path):
    notebook = run_cells(
        tmp_path,
        SETUP,
        'wb.plan_training(target_epsilon=0.8, rounds=4, project="quickstart")',
        'wb.train(target_epsilon=0.8, rounds=4, project="quickstart")',
        'assert wb.budget().set_index(["site", "project"])["spent"].to_dict() == before, "nothing charged"',
    )
    assert not [o for o in notebook.cells[0].outputs if o.output_type == "error"], notebook.cells[0].outputs
    for cell in notebook.cells[1:3]:
        error = error_of(cell)
        assert error.ename == "ProjectBudgetSpent"
        assert len(error.traceback) == 1, "IPython shows the paragraph, not a traceback"
        shown = error.traceback[0]
        assert "\n" not in shown and "Traceback" not in shown and "File " not in shown
        assert "project 'quickstart' has already spent epsilon 0.834 at site hospital_0" in shown
        assert "its allocation there is 1.00" in shown
        assert "Nothing was trained or charged" in shown and "Fix:" in shown
        assert "NoBracketInterval" not in shown
    assert not [o for o in notebook.cells[3].outputs if o.output_type == "error"], notebook.cells[3].outputs

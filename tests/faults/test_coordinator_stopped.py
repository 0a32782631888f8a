"""The coordinator stopped mid-study: the study says so (exit 3), and its result lists what
each site was charged, from the receipts that reached the coordinator, with what could not
be confirmed. Started again, the coordinator stops the run its predecessor left, so no site
is asked anything more for it. Runs last in this package (conftest orders it)."""

from __future__ import annotations

import json
import re

import pytest

from federation.coordinator.run_folder import RunFolder
from federation.coordinator.superlink import CONNECTION, Coordinator

from ._faults_helpers import Running, workbench

pytestmark = pytest.mark.slow


def test_coordinator_stopped_mid_study_leaves_a_result_listing_what_each_site_spent(running):
    project = "coordinator_stopped"
    running.allocate(project, epsilon=2.0)
    study = Running.start(*running.study_args(project=project, rounds=8, site_timeout=60, timeout=300))
    try:
        run_id = study.wait_for(r"^run (\S+): Ctrl-C cancels it", timeout=120).group(1)
        study.wait_for(r"^round 1/8", timeout=120)
        stopped = workbench("coordinator", "stop", "--folder", str(running.coordinator))
        code, output = study.finish(timeout=120)
    finally:
        study.kill()
    assert stopped.returncode == 0, stopped.stderr
    assert code == 3, output
    assert "the coordinator's SuperLink" in output and "stopped while the study ran" in output
    assert "Traceback" not in output
    summary = json.loads((running.root / "out" / project / "summary.json").read_text())
    assert summary["status"] == "SiteUnreachable"
    charges = {c["site"]: c for c in summary["charges"]}
    assert sorted(charges) == running.sites
    for site in running.sites:
        assert 1 in charges[site]["rounds_charged"]
        line = next(x for x in output.splitlines() if x.strip().startswith(f"{site}: epsilon"))
        assert re.search(r"rounds charged: 1(, \d+)*", line)
        spent = running.spent(site, project)
        if charges[site]["unconfirmed"]:
            assert spent >= charges[site]["epsilon_project"] - 1e-9 and "NOT CONFIRMED" in line
        else:
            assert spent == pytest.approx(charges[site]["epsilon_project"])

    # Started again, the coordinator stops the run its predecessor left unfinished.
    started = workbench("coordinator", "start", "--folder", str(running.coordinator))
    assert started.returncode == 0, started.stderr
    folder = RunFolder(running.coordinator / "runs" / run_id)
    coordinator = Coordinator.open(running.coordinator)
    runs = coordinator.flwr("ls", CONNECTION, "--run-id", folder.flower_run())["runs"]
    assert runs[0]["status"] == "finished:stopped", runs  # stopped by the restart, not left running

"""Cancel is real. A study interrupted (Ctrl-C) while a node is down stops its Flower run:
the node, started again later, is never asked anything for it (its ledger and audit log
say so). `workbench study cancel RUN` stops a running study from elsewhere and both
commands print what each site was charged. A run that no client follows stops on its own."""

from __future__ import annotations

import json
import time

import pytest

from federation.coordinator.run_folder import RunFolder
from federation.coordinator.study_runs import open_coordinator, start_study
from federation.coordinator.superlink import CONNECTION, Coordinator
from federation.protocol.spec import TrainingSpec
from federation.site.audit import audit_path, recent_entries
from workbench.session import Workbench

from ._faults_helpers import Running, workbench

pytestmark = pytest.mark.slow


def _requests(federation, site: str, project: str) -> list[dict]:
    entries = recent_entries(path=audit_path(federation.config(site).state_dir), limit=10_000)
    return [e for e in entries if e.get("kind") == "request" and e.get("project") == project]


def _flower_status(federation, folder: RunFolder) -> str:
    coordinator = Coordinator.open(federation.coordinator)
    runs = coordinator.flwr("ls", CONNECTION, "--run-id", folder.flower_run()).get("runs", [])
    return str(runs[0]["status"])


def test_a_study_interrupted_while_a_node_is_down_never_spends_after_the_interrupt(running):
    project = "interrupted"
    running.allocate(project)
    stopped = running.node("stop", site="hospital_02")
    assert stopped.returncode == 0 and "hospital_02's node stopped (it was connected" in stopped.stdout
    assert "node: stopped" in running.node("status", site="hospital_02").stdout

    study = Running.start(*running.study_args(project=project, rounds=2, site_timeout=120, timeout=300))
    try:
        run_id = study.wait_for(r"^run (\S+): Ctrl-C cancels it", timeout=120).group(1)
        # A stalled study talks: it names the site it waits for, and for how long.
        study.wait_for(r"waiting \d+ s for hospital_02 to connect; connected: hospital_01", timeout=60)
        study.interrupt()
        code, output = study.finish(timeout=120)
    finally:
        study.kill()
    assert code == 130, output
    assert "cancelled" in output and "Traceback" not in output
    assert "hospital_01: nothing confirmed" in output and "hospital_02: nothing confirmed" in output
    folder = RunFolder(running.coordinator / "runs" / run_id)
    assert folder.outcome()["status"] == "cancelled"
    assert _flower_status(running, folder) == "finished:stopped"
    summary = json.loads((running.root / "out" / project / "summary.json").read_text())
    assert summary["status"] == "StudyCancelled" and {c["site"] for c in summary["charges"]} == set(running.sites)

    # The node comes back: it serves a new study, and is never asked for the cancelled one.
    restarted = running.node("start", "--detach", site="hospital_02")
    assert restarted.returncode == 0, restarted.stderr
    running.allocate("after_interrupt")
    after = Workbench.connect(
        coordinator=running.coordinator, dictionary=running.dictionary, researcher=running.researcher_key
    ).train(target_epsilon=1.0, rounds=1, project="after_interrupt", site_timeout=60)
    assert after.stopped_reason == ""
    for site in running.sites:
        assert _requests(running, site, project) == []
        assert running.spent(site, project) == 0
        assert running.spent(site, "after_interrupt") > 0


def test_study_cancel_stops_a_running_study_and_both_commands_print_the_charges(running):
    project = "cancelled_midway"
    running.allocate(project, epsilon=2.0)
    study = Running.start(*running.study_args(project=project, rounds=8, site_timeout=60, timeout=300))
    try:
        run_id = study.wait_for(r"^run (\S+): Ctrl-C cancels it", timeout=120).group(1)
        study.wait_for(r"^round 1/8", timeout=120)
        cancel = workbench("study", "cancel", run_id, "--coordinator", str(running.coordinator))
        code, output = study.finish(timeout=120)
    finally:
        study.kill()
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert f"study run {run_id}: Flower run" in cancel.stdout
    assert code == 130, output
    assert "was cancelled: cancelled by `workbench study cancel`" in output
    summary = json.loads((running.root / "out" / project / "summary.json").read_text())
    charges = {c["site"]: c for c in summary["charges"]}
    for site in running.sites:
        line = next(x for x in cancel.stdout.splitlines() if x.strip().startswith(f"{site}:"))
        assert "rounds charged: 1" in line and line.strip() in output  # the same lines, both commands
        spent = running.spent(site, project)
        if charges[site]["unconfirmed"]:  # a round under way when cancelled: the ledger may hold more
            assert spent >= charges[site]["epsilon_project"] - 1e-9
        else:
            assert spent == pytest.approx(charges[site]["epsilon_project"])
        assert len(_requests(running, site, project)) <= 2 * (len(charges[site]["rounds_charged"]) + 1)
    again = workbench("study", "cancel", run_id, "--coordinator", str(running.coordinator))
    assert again.returncode == 0 and "already ended (cancelled)" in again.stdout


def test_a_run_that_no_client_follows_stops_on_its_own(running):
    project = "unfollowed"
    running.allocate(project)
    wb = Workbench.connect(
        coordinator=running.coordinator, dictionary=running.dictionary, researcher=running.researcher_key
    )
    spec = TrainingSpec(project=project, target_epsilon=1.0, rounds=1)
    started = time.monotonic()
    run = start_study(  # and nobody follows it
        coordinator=open_coordinator(running.coordinator),
        spec_config=spec.to_config(),
        encoder_json=wb.encoder().to_json(),
        authorization=None,
        n_sites=3,  # a third site that never comes: the run waits, and nobody follows it
        site_timeout=60,
        unfollowed_after=3.0,  # instead of 60 s: shortened by configuration
    )
    folder = run.folder
    deadline = started + 90
    while folder.outcome() is None:
        assert time.monotonic() < deadline, "the unfollowed run did not stop on its own"
        time.sleep(0.2)
    outcome = folder.outcome()
    assert outcome["status"] == "cancelled"
    assert "no client has followed the run for" in outcome["reason"] and "after 3 s without one" in outcome["reason"]
    deadline = time.monotonic() + 60
    while _flower_status(running, folder) != "finished:stopped":  # it stopped its own Flower run
        assert time.monotonic() < deadline
        time.sleep(0.5)

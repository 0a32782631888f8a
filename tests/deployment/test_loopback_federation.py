"""A SuperLink and three SuperNodes on loopback, with TLS and node authentication,
run real DP trainings; each site's ledger and audit log record them and reconcile
with the coordinator's mirror of receipts.

The tests share one federation (module scope) and run in file order: the failure
tests come last and leave the federation serving.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from federation.processes import pid_alive
from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.pause import pause_node, resume_node
from federation.site.supernode_process import TUNED_LINE
from privacy_budgets.reconciliation import reconcile
from workbench.session import Workbench

pytestmark = pytest.mark.slow


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _connect(loopback):
    return Workbench.connect(
        coordinator=loopback.coordinator.folder, dictionary=loopback.dictionary_path, researcher=loopback.researcher_key
    )


def _site_receipts(receipts: list[dict], site: str) -> list[dict]:
    return [r for r in receipts if r["site_id"] == site]


def _audit(loopback, site: str) -> list[dict]:
    state = loopback.node_config(site).state_dir
    return list(reversed(recent_entries(path=audit_path(state))))


def test_engines_run_with_tls_and_node_authentication(loopback):
    superlink = _cmdline(loopback.coordinator.running_pid())
    for flag in (
        "--enable-supernode-auth",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--ssl-ca-certfile",
        "--disable-runtime-dependency-installation",
        "--database",
    ):
        assert flag in superlink
    for site in loopback.sites:
        node = _cmdline(loopback.nodes[site].pids()["supernode"])
        assert node[node.index("--root-certificates") + 1] == str(loopback.node_config(site).ca_certificate)
        assert "--auth-supernode-private-key" in node and "--insecure" not in node
        assert node[node.index("--isolation") + 1] == "process"  # no ClientApp process per message
        # Every timer patch took effect in the real SuperNode (flwr_compat.py), none fell back.
        supernode_log = loopback.nodes[site].files.supernode_log.read_text()
        assert TUNED_LINE in supernode_log and "left as Flower's" not in supernode_log
    # The Fleet/Control port speaks TLS only: a plain-HTTP request gets no HTTP answer.
    conn = http.client.HTTPConnection("127.0.0.1", loopback.coordinator.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/")
        conn.getresponse().read()


def test_dp_training_of_two_rounds_is_recorded_and_reconciles(loopback):
    executors = {site: loopback.nodes[site].pids()["executor"] for site in loopback.sites}
    loopback.allocate(project="deployed", epsilon=1.0)
    wb = _connect(loopback)
    result = wb.train(target_epsilon=1.0, rounds=2, project="deployed")

    assert result.stopped_reason == ""
    assert sorted(result.history["round"].unique()) == [1, 2]
    assert set(result.history["status"]) == {"ok"}
    assert sorted(result.history["site"].unique()) == loopback.sites
    mirror = wb.receipts()
    budget = wb.budget().query("project == 'deployed'").set_index("site")
    for site in loopback.sites:
        with loopback.ledger(site) as ledger:
            assert ledger.verify().ok
            spent = ledger.spent(dataset=site, project="deployed")
            export = ledger.export()
        assert 0 < spent <= 1.0 + 1e-9
        frame = reconcile(receipts=_site_receipts(mirror, site), ledger_export=export)
        assert frame.empty, frame.attrs["verdict"]
        assert budget.loc[site, "epsilon_project"] == pytest.approx(spent)
        audit_file = audit_path(loopback.node_config(site).state_dir)
        assert verify_audit(audit_file).ok
        served = [e for e in _audit(loopback, site) if e.get("project") == "deployed" and e["kind"] == "request"]
        assert [e["task"] for e in served] == ["train", "evaluate", "train", "evaluate"]
        assert all(e["decision"]["outcome"] == "served" for e in served)
        trained = sum(e["epsilon_charged"] for e in served if e["task"] == "train")
        assert trained > 0
    # One long-lived executor per site served every message (torch imported once).
    assert {site: loopback.nodes[site].pids()["executor"] for site in loopback.sites} == executors


def test_unregistered_node_is_refused(loopback, tmp_path):
    from federation.site.config import load_node_config, write_node_template
    from federation.site.keys import generate_node_keys
    from federation.site.supernode import NodeStartError, start_node

    base = loopback.node_config("hospital_01")
    generate_node_keys(private_key=tmp_path / "stranger_key")
    write_node_template(
        path=tmp_path / "node.toml",
        site_id="stranger",
        data_path=base.data_path,
        state_dir=tmp_path / "state",
        dictionary_path=loopback.dictionary_path,
        coordinator_address=loopback.coordinator.address,
        ca_certificate=base.ca_certificate,
        node_private_key=tmp_path / "stranger_key",
        clientappio_address=f"127.0.0.1:{_free_port()}",
    )
    with pytest.raises(NodeStartError, match="refused this node: its public key .* is not registered"):
        start_node(config=load_node_config(tmp_path / "node.toml"), timeout=90, activation_wait=0)


def test_node_without_the_coordinators_ca_cannot_connect(loopback, tmp_path):
    from federation.coordinator.certificates import create_tls_files
    from federation.site.config import load_node_config, write_node_template
    from federation.site.supernode import NodeStartError, start_node

    base = loopback.node_config("hospital_01")
    other_ca = create_tls_files(folder=tmp_path / "other", hosts=["127.0.0.1"]).ca_certificate
    write_node_template(
        path=tmp_path / "node.toml",
        site_id="hospital_01",
        data_path=base.data_path,
        state_dir=tmp_path / "state",
        dictionary_path=loopback.dictionary_path,
        coordinator_address=loopback.coordinator.address,
        ca_certificate=other_ca,
        node_private_key=base.node_private_key,
        clientappio_address=f"127.0.0.1:{_free_port()}",
    )
    with pytest.raises(NodeStartError, match="does not verify"):
        start_node(config=load_node_config(tmp_path / "node.toml"), timeout=90)


def test_paused_node_refuses_and_the_study_stops_with_its_reason(loopback):
    loopback.allocate(project="paused", epsilon=1.0)
    state = loopback.node_config("hospital_02").state_dir
    pause_node(state_dir=state, reason="maintenance window", who="site IT")
    try:
        result = _connect(loopback).train(target_epsilon=1.0, rounds=2, project="paused")
    finally:
        resume_node(state_dir=state)
    assert "hospital_02 refused round 1" in result.stopped_reason
    assert "paused" in result.stopped_reason.lower()
    assert result.history["round"].max() == 1
    with loopback.ledger("hospital_02") as ledger:
        assert ledger.spent(dataset="hospital_02", project="paused") == 0
        assert ledger.verify().ok
    refused = [e for e in _audit(loopback, "hospital_02") if e.get("project") == "paused" and e["kind"] == "request"]
    assert refused and refused[0]["decision"]["refusal_kind"] == "paused"
    assert verify_audit(audit_path(state)).ok


def test_a_dead_site_executor_is_restarted_and_serves(loopback):
    site = "hospital_01"
    node = loopback.nodes[site]
    before = node.pids()
    os.kill(before["executor"], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while not (node.pids().get("executor_restarts") == 1 and node.pids()["executor"] != before["executor"]):
        assert time.monotonic() < deadline, f"the executor was not restarted; see {node.files.node_log}"
        time.sleep(0.2)
    assert node.pids()["supernode"] == before["supernode"]  # the node stayed connected
    assert "the site executor died" in node.files.node_log.read_text()
    loopback.allocate(project="after_executor_death", epsilon=1.0)
    result = _connect(loopback).train(target_epsilon=1.0, rounds=1, project="after_executor_death")
    assert result.stopped_reason == "" and set(result.history["status"]) == {"ok"}


def _wait_for_reservation(ledger_path: Path, project: str, timeout: float) -> None:
    """Until the site's ledger holds a reservation for ``project`` (its work has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with closing(sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=0.05)) as conn:
                if conn.execute(
                    "SELECT 1 FROM entries WHERE kind='reserve' AND project=? LIMIT 1", (project,)
                ).fetchone():
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no reservation for {project} within {timeout} s")


def test_node_killed_mid_round_leaves_verifiable_records_and_serves_after_restart(loopback):
    site = "hospital_03"
    config = loopback.node_config(site)
    loopback.allocate(project="crash", epsilon=1.0)
    wb = _connect(loopback)
    outcome: dict = {}
    study = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", wb.train(target_epsilon=1.0, rounds=2, project="crash", site_timeout=20)
        )
    )
    study.start()
    _wait_for_reservation(config.site_config().ledger_path, "crash", timeout=120)
    pids = loopback.nodes[site].pids()
    for name in ("supervisor", "executor", "supernode"):  # the hospital's machine loses power
        os.kill(pids[name], signal.SIGKILL)
    study.join(timeout=180)
    assert not study.is_alive()
    result = outcome["result"]
    # Killed right after its round-1 reservation: its reply is lost in round 1, or (if the
    # update got out first) the next message finds no node; either way the study names the
    # site (not a Flower node id) and lists what each site was charged.
    # (Our 20 s wait, or Flower's own error reply once the message's time to live passed.)
    said = rf"Site {site} failed round [12]: (no reply from site {site} within 20 s|site {site} did not answer round)"
    assert re.search(said, result.stopped_reason), result.stopped_reason
    assert result.stop_kind == "failed"
    charges = {c.site: c for c in result.charges}
    assert sorted(charges) == loopback.sites
    assert charges[site].unconfirmed  # its lost step: it may have been charged, its ledger says
    for other in set(loopback.sites) - {site}:
        with loopback.ledger(other) as ledger:
            assert charges[other].epsilon_project == pytest.approx(ledger.spent(dataset=other, project="crash"))
    assert not any(pid_alive(pids[n]) for n in ("supervisor", "executor", "supernode"))

    with loopback.ledger(site) as ledger:
        assert ledger.verify().ok
        # The work cut off by the crash stays reserved: a crash never frees budget.
        assert "reserve" in [e.kind for e in ledger.entries(dataset=site) if e.project == "crash"]
    assert verify_audit(audit_path(config.state_dir)).ok

    loopback.nodes.pop(site)
    loopback.start_site(site)
    loopback.allocate(project="after_crash", epsilon=1.0)
    again = _connect(loopback).train(target_epsilon=1.0, rounds=1, project="after_crash")
    assert again.stopped_reason == ""
    assert set(again.history["status"]) == {"ok"} and site in set(again.history["site"])
    with loopback.ledger(site) as ledger:
        assert ledger.verify().ok
        assert ledger.spent(dataset=site, project="after_crash") > 0


def _free_port() -> int:
    from federation.processes import free_port

    return free_port()

"""Issue 14 over real processes on loopback (TLS, node authentication, each node's own
node.toml with ``require_signed_requests = true``): a study and a query batch signed by
the researcher each site's board approved run, and every site's audit log names the
researcher; an unapproved researcher and an unsigned batch are refused at every site
with nothing charged; and the coordinator refuses a site's replies whose receipts do
not verify under the ledger key registered for that site."""

from __future__ import annotations

import json

import pytest

from federation.coordinator.run_folder import RunFolder
from federation.engines.loopback import RESEARCHER
from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.authorization import NOT_APPROVED
from privacy_budgets.signatures import generate_key_pair
from workbench.errors import StudyRefused
from workbench.session import Workbench

pytestmark = pytest.mark.slow


def _connect(loopback, **options):
    return Workbench.connect(coordinator=loopback.coordinator.folder, dictionary=loopback.dictionary_path, **options)


def _requests(loopback, site: str, project: str) -> list[dict]:
    lines = reversed(recent_entries(path=audit_path(loopback.node_config(site).state_dir), limit=200))
    return [e for e in lines if e["kind"] == "request" and e.get("project") == project]


def _spent(loopback, site: str, project: str) -> float:
    with loopback.ledger(site) as ledger:
        return ledger.spent(dataset=loopback.node_config(site).dataset, project=project)


def test_a_signed_study_and_query_batch_run_and_every_audit_log_names_the_researcher(loopback):
    loopback.allocate(project="signed", epsilon=1.0)
    wb = _connect(loopback, researcher=loopback.researcher_key)
    result = wb.train(target_epsilon=0.8, rounds=2, project="signed")
    assert result.stopped_reason == "" and sorted(result.history["round"].unique()) == [1, 2]
    answer = wb.ask([wb.query.count(by="site", epsilon=0.1)], project="signed")[0]
    assert (answer.sites["status"] == "ok").all()
    for site in loopback.sites:
        lines = _requests(loopback, site, "signed")
        assert [e["task"] for e in lines] == ["train", "evaluate", "train", "evaluate", "query:count"]
        assert all(e["decision"]["outcome"] == "served" for e in lines)
        assert {e["researcher"]["name"] for e in lines} == {RESEARCHER}
        assert len({e["researcher"]["request"] for e in lines}) == 2  # one signature for the study, one for the batch
        assert verify_audit(audit_path(loopback.node_config(site).state_dir)).ok


def test_an_unapproved_researcher_and_an_unsigned_batch_are_refused_at_every_site(loopback, tmp_path):
    loopback.allocate(project="guarded", epsilon=1.0)
    generate_key_pair(path=tmp_path / "outsider", passphrase="pw", comment="outsider")
    outsider = _connect(loopback, researcher=tmp_path / "outsider", passphrase="pw")
    with pytest.raises(StudyRefused) as refused:
        outsider.train(target_epsilon=0.5, rounds=1, project="guarded")
    assert NOT_APPROVED.split(";")[0] in str(refused.value)
    unsigned = _connect(loopback).ask(outsider.query.count(epsilon=0.1), project="guarded")
    assert (unsigned.sites["status"] == "refused").all()
    assert unsigned.sites["reason"].str.contains("carries no signature").all()
    for site in loopback.sites:
        assert _spent(loopback, site, "guarded") == 0.0
        lines = _requests(loopback, site, "guarded")
        assert [e["task"] for e in lines] == ["train", "evaluate", "query:count"]
        assert all(e["decision"]["outcome"] == "refused" for e in lines)
        assert all(e["researcher"] is None for e in lines)


def test_the_coordinator_refuses_receipts_that_do_not_verify_under_the_registered_ledger_key(loopback):
    loopback.allocate(project="receipts", epsilon=1.0)
    nodes_path = loopback.coordinator.nodes_path
    registered = nodes_path.read_text()
    nodes = json.loads(registered)
    # the registry holds another key for hospital_02: its real receipts then look forged
    nodes["hospital_02"]["ledger_key"] = nodes["hospital_01"]["ledger_key"]
    nodes_path.write_text(json.dumps(nodes))
    try:
        result = _connect(loopback, researcher=loopback.researcher_key).train(
            target_epsilon=0.5, rounds=1, project="receipts"
        )
    finally:
        nodes_path.write_text(registered)
    assert "Site hospital_02 failed round 1: refused by the coordinator" in result.stopped_reason
    assert "registered ledger key" in result.stopped_reason
    assert {r["site_id"] for r in result.receipts} == {"hospital_01", "hospital_03"}
    journal = RunFolder(loopback.coordinator.runs_dir / result.spec.run_id).exchanges()
    from_02 = [e for e in journal if e["event"] == "reply" and e["site"] == "hospital_02"]
    assert from_02 and all(e["status"] == "failed" and e["receipts"] == [] for e in from_02)


def test_a_rogue_node_claiming_another_sites_id_is_refused_by_the_coordinator(loopback, tmp_path):
    """A fourth node, registered with the coordinator as "rogue", whose node.toml says it
    is hospital_01 (with a ledger of its own that approves the researcher): its replies
    claim hospital_01's id and are refused; nothing of them enters the mirror."""
    from federation.coordinator.registry import register_node
    from federation.processes import free_port
    from federation.site.config import load_node_config, write_node_template
    from federation.site.keys import generate_node_keys
    from federation.site.supernode import start_node
    from privacy_budgets import Ledger
    from privacy_budgets.signatures import SshPublicKey

    project = "rogue"
    loopback.allocate(project=project, epsilon=1.0)
    base = loopback.node_config("hospital_01")
    generate_node_keys(private_key=tmp_path / "rogue_key", comment="rogue")
    write_node_template(
        path=tmp_path / "node.toml",
        site_id="hospital_01",  # the claim
        data_path=base.data_path,
        state_dir=tmp_path / "state",
        dictionary_path=loopback.dictionary_path,
        dataset="hospital_01",
        coordinator_address=loopback.coordinator.address,
        ca_certificate=base.ca_certificate,
        node_private_key=tmp_path / "rogue_key",
        clientappio_address=f"127.0.0.1:{free_port()}",
        require_signed_requests=True,
    )
    rogue = load_node_config(tmp_path / "node.toml")
    (tmp_path / "state").mkdir()
    key = SshPublicKey.load(f"{loopback.researcher_key}.pub").openssh(comment=False)
    with Ledger.open(rogue.site_config().ledger_path, site_id="hospital_01") as ledger:
        ledger.set_cap(dataset="hospital_01", epsilon=10.0, delta=1e-5, actor="rogue", reason="rogue")
        ledger.allocate(dataset="hospital_01", project=project, epsilon=1.0, actor="rogue", reason="rogue")
        ledger.approve(
            dataset="hospital_01",
            project=project,
            purpose="rogue",
            researchers=[{"name": RESEARCHER, "key": key}],
            actor="rogue",
            reason="rogue",
        )
        rogue_key = ledger.public_key
    nodes_path = loopback.coordinator.nodes_path
    registered = nodes_path.read_text()
    handle = None
    try:
        register_node(
            coordinator=loopback.coordinator, public_key=rogue.node_public_key, name="rogue", ledger_key=rogue_key
        )
        handle = start_node(config=rogue, heartbeat_seconds=10)
        result = _connect(loopback, researcher=loopback.researcher_key, sites=4).train(
            target_epsilon=0.5, rounds=1, project=project
        )
    finally:
        if handle is not None:
            handle.stop()
        nodes_path.write_text(registered)
    assert "Site rogue failed round 1: refused by the coordinator" in result.stopped_reason
    assert "registered as site rogue, but its reply claims to be site 'hospital_01'" in result.stopped_reason
    assert {r["site_id"] for r in result.receipts} == {"hospital_01", "hospital_02", "hospital_03"}
    with Ledger.open(rogue.site_config().ledger_path, site_id="hospital_01") as ledger:
        rogue_seqs = {e.seq for e in ledger.entries() if e.kind == "commit"}
    genuine = [r for r in result.receipts if r["site_id"] == "hospital_01"]
    assert genuine and all(r["public_key"] != rogue_key for r in genuine) and rogue_seqs  # it trained; dropped
    journal = RunFolder(loopback.coordinator.runs_dir / result.spec.run_id).exchanges()
    from_rogue = [e for e in journal if e["event"] == "reply" and e["site"] == "rogue"]
    assert from_rogue and all(e["status"] == "failed" and e["receipts"] == [] for e in from_rogue)

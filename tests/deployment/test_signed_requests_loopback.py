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

"""A simulated study runs through the same gate and audit log (no node.toml there: the
default policy from each SiteConfig), and a paused site is reported to the coordinator
by name (its reason stays in its own audit log): the study stops, as it does for any site that refuses a round
(federation/coordinator/study_loop.py), rather than go on without an approved site."""

from __future__ import annotations

import pytest

from federation.site.audit import audit_path, recent_entries, verify_audit
from federation.site.pause import pause_node
from workbench import Workbench


@pytest.mark.slow
def test_a_simulated_study_serves_through_the_gate_and_stops_clearly_at_a_paused_site(tmp_path):
    wb = Workbench.simulate(sites=2, rows=200, seed=5, workdir=tmp_path)
    running, paused = wb.site_configs()
    pause_node(state_dir=paused.state_dir, reason="ethics board review", who="site IT")

    result = wb.train(target_epsilon=1.0, rounds=2, model="logreg", project="gated-study")

    assert result.stopped_reason.startswith(
        f"Site {paused.site_id} refused round 1: site {paused.site_id} is paused by its IT"
    )
    assert "ethics board review" not in result.stopped_reason and "(incident " in result.stopped_reason

    served = [e for e in reversed(recent_entries(path=audit_path(running.state_dir))) if e["kind"] == "request"]
    assert [(e["task"], e["decision"]["outcome"]) for e in served] == [("train", "served"), ("evaluate", "served")]
    train_receipt = next(r for r in result.receipts if r["site_id"] == running.site_id and r["kind"] == "commit")
    assert (
        served[0]["epsilon_charged"] == pytest.approx(train_receipt["epsilon"])
        and served[0]["project"] == "gated-study"
    )

    refused = list(reversed(recent_entries(path=audit_path(paused.state_dir))))
    assert [(e["kind"], e.get("task"), e.get("alert")) for e in refused] == [
        ("received", "train", None),
        ("request", "train", None),
        ("alert", "train", "paused"),
        ("received", "evaluate", None),
        ("request", "evaluate", None),
        ("alert", "evaluate", "paused"),
    ]
    assert all(e["decision"]["refusal_kind"] == "paused" for e in refused if e["kind"] == "request")
    requests = [e for e in refused if e["kind"] == "request"]
    assert "by site IT: ethics board review" in requests[0]["decision"]["reason"]
    with wb.ledger(paused.site_id) as ledger:
        assert ledger.spent(dataset=paused.dataset, project="gated-study") == 0.0
    assert verify_audit(audit_path(running.state_dir)).ok and verify_audit(audit_path(paused.state_dir)).ok

"""The record of processing (GDPR art. 30): per dataset, what the ledger and the audit log
prove, with what they cannot know taken from node.toml's [processing] keys (issue 16)."""

from __future__ import annotations

import json

from _node_helpers import PROJECT, set_key
from typer.testing import CliRunner

from federation.site.audit import append_audit, audit_path, utc_now
from federation.site.config import load_node_config
from federation.site.ledger_keys import open_site_ledger
from privacy_budgets import gaussian_event
from privacy_budgets.cli import app
from privacy_budgets.simulated_board import SimulatedBoard


def test_the_record_lists_proven_activities_and_stated_facts(tmp_path, node):
    site = node.site
    researcher = SimulatedBoard.create(tmp_path / "people").roster().members[0]
    with open_site_ledger(site) as ledger:
        ledger.approve(
            dataset=site.dataset,
            project=PROJECT,
            purpose="survival after myocardial infarction (protocol 12)",
            researchers=[{"name": "Dr Lee", "key": researcher.key.openssh(comment=False)}],
            actor="ethics board",
            reason="protocol 12 approved",
        )
        for _ in range(2):
            ledger.commit(
                ledger.reserve(
                    dataset=site.dataset,
                    project=PROJECT,
                    actor="Dr Lee",
                    event=gaussian_event(noise_multiplier=8.0),
                    purpose="analytics: count",
                )
            )
    log = audit_path(site.state_dir)
    for outcome in ("served", "served", "refused"):
        append_audit(
            path=log,
            entry={"kind": "request", "time": utc_now(), "project": PROJECT, "decision": {"outcome": outcome}},
        )
    set_key(node.toml, "controller", '"Hospital A, dataprotection@hospital-a.example"')
    set_key(node.toml, "dpo", '"dpo@hospital-a.example"')
    set_key(node.toml, "data_subjects", '"adult cardiology patients"')
    set_key(node.toml, "data_categories", '"health data: diagnoses, laboratory values"')
    assert load_node_config(node.toml).processing_dpo == "dpo@hospital-a.example"  # the strict reader knows them
    out = tmp_path / "art30.html"
    done = CliRunner().invoke(
        app,
        ["report", "--ledger", str(site.ledger_path), "--out", str(out), "--art30", "--node-toml", str(node.toml)],
    )
    assert done.exit_code == 0, done.output
    assert "time limits for erasure (retention)" in done.output  # not stated: said, never guessed
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["stated_by_site"]["dpo"] == "dpo@hospital-a.example" and record["stated_by_site"]["retention"] is None
    assert record["ledger"]["verification"].startswith("OK")
    [dataset] = record["datasets"]
    assert dataset["dataset"] == site.dataset and dataset["cap"] == {"epsilon": 10.0, "delta": 1e-5}
    [activity] = dataset["activities"]
    assert activity["project"] == PROJECT and activity["researchers"] == ["Dr Lee"]
    assert activity["purpose"].startswith("survival after myocardial infarction")
    assert activity["approvals"][0]["signed_by"] == ["ethics board"] and not activity["approvals"][0]["by_quorum"]
    assert sum(activity["releases"].values()) == 2 and activity["epsilon_spent"] > 0
    assert activity["requests"] == {"served": 2, "refused": 1}
    page = out.read_text()
    assert (
        "Dr Lee" in page and "not stated</b>: set [processing] retention" in page and "dpo@hospital-a.example" in page
    )

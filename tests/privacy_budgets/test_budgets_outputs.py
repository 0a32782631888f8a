"""What people read: the HTML report, statements, reconciliation, the planning table."""

from __future__ import annotations

import re

import pytest
from conftest import DATASET, DELTA, PROJECT, SITE

from privacy_budgets import Ledger, build_report, calibrate, plan_dpsgd, reconcile, statement
from privacy_budgets.accounting import epsilon
from privacy_budgets.mechanisms import dpsgd_event, gaussian_event

ROUND = dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=80)


@pytest.fixture
def busy(ledger):
    """Two rounds of training with their uncovered releases, a query, an aborted query."""
    for round_ in (1, 2):
        r = ledger.reserve(
            dataset=DATASET,
            project=PROJECT,
            event=ROUND,
            actor="node",
            purpose="FedAvg update",
            run_id="r42",
            round=round_,
        )
        ledger.commit(r)
        ledger.record_uncovered(
            dataset=DATASET,
            project=PROJECT,
            actor="node",
            purpose="FedAvg weights",
            run_id="r42",
            round=round_,
            what="training row count 4012 sent to the coordinator",
        )
    q = ledger.reserve(
        dataset=DATASET,
        project=PROJECT,
        event=gaussian_event(noise_multiplier=20.0),
        actor="analyst",
        purpose="patient count",
        query_id="q1",
    )
    ledger.abort(q, reason="analyst cancelled")
    return ledger


def test_statements_say_what_when_and_how_much(busy):
    by_kind = {}
    for entry in busy.entries():
        by_kind.setdefault(entry.kind, []).append(statement(entry))
    commit = by_kind["commit"][1]
    assert re.fullmatch(
        r"Released for 'FedAvg update' \(run r42, round 2\): a model update trained with DP-SGD "
        r"\(80 steps, each on a Poisson sample of 0\.01 of the records, noise multiplier 1\.1\)\. "
        r"Guarantee: \(0\.51, 1e-05\)-differential privacy for each patient of dataset hospital_01 "
        r"under add/remove-one-patient, for this release; the dataset's total is now epsilon "
        r"0\.66\. Assumes: one row per patient, gradients clipped per record, sampling as stated\.",
        commit,
    )
    assert by_kind["uncovered"][0].startswith(
        "Released WITHOUT a differential privacy guarantee for 'FedAvg weights' (run r42, round 1): "
        "training row count 4012 sent to the coordinator. No DP mechanism covers this release"
    )
    assert "aborted (analyst cancelled; query q1): nothing was released" in by_kind["abort"][0]
    assert by_kind["reserve"][2].startswith("Reserved, not yet released for 'patient count' (query q1)")
    assert "may spend at most epsilon 3.00 at delta 1e-05" in by_kind["set_cap"][0]
    assert "project quickstart may spend at most epsilon 1.00" in by_kind["allocate"][0]
    assert "add or remove one patient" in by_kind["genesis"][0]


def test_report_is_one_self_contained_file(busy, tmp_path):
    path = build_report(busy, out=tmp_path / "report.html")
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 2  # dataset and project burn-down
    assert not re.search(r"""(src|href)=['"](?!data:)""", text)  # nothing fetched from outside
    assert "<script" not in text and "@import" not in text
    assert "Verification: PASSED" in text and busy.public_key_fingerprint in text
    assert "add or remove one patient" in text and "value discretisation 0.001" in text
    for entry in busy.entries():
        assert statement(entry).replace("'", "&#x27;") in text
    busy.close()
    from_file = build_report(busy.path, out=tmp_path / "from_file.html").read_text()
    assert "Verification: PASSED" in from_file
    export = tmp_path / "export.json"
    with Ledger.open(busy.path, site_id=SITE) as again:
        again.export(out=export)
    assert "Verification: PASSED" in build_report(export, out=tmp_path / "e.html").read_text()


def test_report_of_a_tampered_ledger_is_red(busy, tmp_path):
    import sqlite3

    busy.close()
    with sqlite3.connect(busy.path) as conn:
        conn.execute("UPDATE entries SET epsilon = 0.001 WHERE seq = 5")
    text = build_report(busy.path, out=tmp_path / "r.html").read_text()
    assert "Verification: FAILED" in text and "entry seq 5 was altered" in text


def test_reconcile_reports_every_kind_of_mismatch(busy, tmp_path):
    commits = [e for e in busy.entries() if e.kind == "commit"]
    declared = [e for e in busy.entries() if e.kind == "uncovered"]
    receipts = [busy.receipt(e).to_dict() for e in commits]
    others = [busy.receipt(e).to_dict() for e in declared]
    assert reconcile(receipts=receipts + others, ledger_export=busy.export()).empty
    # The coordinator never got round 2's receipt, mirrors round 1 with a wrong epsilon,
    # holds one from another site and one for a spend the site never made.
    edited = dict(receipts[0], epsilon=0.01)
    foreign = dict(receipts[0], site_id="site_z")
    unknown = dict(receipts[0], seq=3, reservation_id="feedbeef", entry_hash="ab" * 32)
    frame = reconcile(receipts=[edited, foreign, unknown, *others], ledger_export=busy.export())
    problems = dict(zip(frame["problem"], frame["detail"], strict=False))
    assert set(problems) == {"different_epsilon", "unknown_to_site", "unknown_to_coordinator"}
    assert "receipt epsilon 0.01" in problems["different_epsilon"]
    assert "signature does not verify" in problems["different_epsilon"]
    assert frame["problem"].tolist().count("unknown_to_site") == 2
    assert frame.attrs["verdict"].startswith("NOT reconciled: 4 mismatches")
    # The site drops its newest entries: the receipts catch it.
    export = busy.export()
    last = commits[-1].seq
    export["entries"] = [e for e in export["entries"] if e["seq"] < last]
    frame = reconcile(receipts=receipts + others, ledger_export=export)
    assert frame["problem"].tolist() == ["missing_entry", "missing_entry"]  # and its row count
    assert frame["seq"].tolist() == [last, last + 1]
    # The site rewrites an entry: a different hash at that seq.
    export = busy.export()
    export["entries"][commits[0].seq - 1]["entry_hash"] = "cd" * 32
    frame = reconcile(receipts=receipts + others, ledger_export=export)
    assert "different_hash" in frame["problem"].tolist()
    assert "export_fails_verification" in frame["problem"].tolist()


def test_plan_dpsgd_and_calibrate(tmp_path):
    table = plan_dpsgd(
        noise_multipliers=[0.8, 1.1, 2.0], rounds=[5, 10], steps_per_round=20, sampling_rate=0.01, delta=DELTA
    )
    assert len(table) == 6
    row = table[(table.noise_multiplier == 1.1) & (table.rounds == 10)].iloc[0]
    assert row["steps"] == 200
    assert row["epsilon"] == epsilon(
        events=[dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=200)], delta=DELTA
    )
    assert (table["epsilon_rdp"] >= table["epsilon"]).all()
    sigma = calibrate(target_epsilon=1.0, delta=DELTA, sampling_rate=0.01, steps=200)
    assert epsilon(events=[dpsgd_event(noise_multiplier=sigma, sampling_rate=0.01, steps=200)], delta=DELTA) <= 1.0

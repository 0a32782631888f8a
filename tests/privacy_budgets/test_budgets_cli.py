"""The 'budget' CLI through typer's CliRunner: results, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import json

import pytest
from conftest import DATASET, PROJECT, SITE
from typer.testing import CliRunner

from privacy_budgets import Ledger
from privacy_budgets.cli import app
from privacy_budgets.mechanisms import dpsgd_event

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def spent_ledger(ledger, ledger_path):
    r = ledger.reserve(
        dataset=DATASET,
        project=PROJECT,
        actor="node",
        purpose="FedAvg",
        event=dpsgd_event(noise_multiplier=1.1, sampling_rate=0.01, steps=80),
        run_id="r1",
        round=1,
    )
    ledger.commit(r)
    ledger.close()
    return ledger_path


def test_status_table_and_json(spent_ledger):
    result = invoke("status", "--ledger", spent_ledger)
    assert result.exit_code == 0 and "(all projects)" in result.output
    rows = json.loads(invoke("status", "--ledger", spent_ledger, "--json").output)
    assert [r["project"] for r in rows] == ["(all projects)", PROJECT]
    assert rows[1]["limit"] == 1.0 and 0.5 < rows[1]["spent"] < 0.52


def test_history_json_carries_serialised_events(spent_ledger):
    result = invoke("history", "--ledger", spent_ledger, "--dataset", DATASET, "--json")
    assert result.exit_code == 0
    items = json.loads(result.output)
    commit = next(i for i in items if i["kind"] == "commit")
    assert commit["mechanism"]["format"] == "dp_accounting/0.6"
    assert commit["mechanism"]["event"]["type"] == "SelfComposedDpEvent"
    assert commit["statement"].startswith("Released for 'FedAvg' (run r1, round 1)")
    plain = invoke("history", "--ledger", spent_ledger)
    assert plain.exit_code == 0 and "genesis" in plain.output


def test_set_cap_allocate_checkpoint_verify(spent_ledger, tmp_path):
    result = invoke(
        "set-cap",
        "--ledger",
        spent_ledger,
        "--dataset",
        "icu",
        "--epsilon",
        "2",
        "--delta",
        "1e-6",
        "--actor",
        "site-admin",
        "--reason",
        "new table",
    )
    assert result.exit_code == 0, result.output
    assert "Cap set by site-admin: dataset icu may spend at most epsilon 2.00" in result.output
    result = invoke(
        "allocate",
        "--ledger",
        spent_ledger,
        "--dataset",
        "icu",
        "--project",
        "sepsis",
        "--epsilon",
        "0.5",
        "--actor",
        "ethics-board",
        "--reason",
        "protocol 7",
    )
    assert result.exit_code == 0, result.output
    cp = tmp_path / "cp.json"
    assert invoke("checkpoint", "--ledger", spent_ledger, "--out", cp).exit_code == 0
    result = invoke("verify", "--ledger", spent_ledger, "--checkpoint", cp)
    assert result.exit_code == 0 and result.output.startswith("OK: 7 entries")
    with Ledger.open(spent_ledger, site_id=SITE) as ledger:
        fp = ledger.public_key_fingerprint
    assert invoke("verify", "--ledger", spent_ledger, "--public-key", fp).exit_code == 0
    bad = invoke("verify", "--ledger", spent_ledger, "--public-key", "ed25519:SHA256:" + "0" * 64)
    assert bad.exit_code == 4 and bad.output.startswith("FAILED at seq 1")


def test_verify_exits_1_on_tampering(spent_ledger):
    import sqlite3

    with sqlite3.connect(spent_ledger) as conn:
        conn.execute("UPDATE entries SET purpose = 'edited' WHERE seq = 5")
        conn.execute("UPDATE entries SET details_json = '{broken' WHERE seq = 2")
    result = invoke("verify", "--ledger", spent_ledger)
    assert result.exit_code == 4
    assert "FAILED at seq 2: entry seq 2 was altered" in result.output
    listing = invoke("history", "--ledger", spent_ledger, "--json")  # still listed, not a traceback
    assert listing.exit_code == 0
    assert json.loads(listing.output)[1]["details"] == "{broken"
    assert invoke("report", "--ledger", spent_ledger, "--out", spent_ledger.with_suffix(".html")).exit_code == 0


def test_report_and_reconcile_commands(spent_ledger, tmp_path):
    out = tmp_path / "report.html"
    assert invoke("report", "--ledger", spent_ledger, "--out", out).exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    export = tmp_path / "export.json"
    assert invoke("export", "--ledger", spent_ledger, "--out", export).exit_code == 0
    with Ledger.open(spent_ledger, site_id=SITE) as ledger:
        receipts = [ledger.receipt(e).to_dict() for e in ledger.entries() if e.kind in ("commit", "uncovered")]
    (tmp_path / "receipts.json").write_text(json.dumps(receipts))
    result = invoke("reconcile", "--receipts", tmp_path / "receipts.json", "--export", export)
    assert result.exit_code == 0 and result.output.startswith("Reconciled: 1 receipts")
    (tmp_path / "none.json").write_text("[]")
    result = invoke("reconcile", "--receipts", tmp_path / "none.json", "--export", export)
    assert result.exit_code == 4 and "unknown_to_coordinator" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon", "-1", "--delta", "1e-5"], "Error: cap epsilon must be > 0; got -1.0."),
        (["--epsilon", "nan", "--delta", "1e-5"], "Error: cap epsilon must be a finite number; got nan."),
        (["--epsilon", "1", "--delta", "0"], "Error: delta must lie strictly between 0 and 1; got 0.0."),
        (["--epsilon", "1", "--delta", "1.5"], "Error: delta must lie strictly between 0 and 1; got 1.5."),
    ],
)
def test_bad_numbers_exit_2_with_one_line(spent_ledger, args, message):
    result = invoke("set-cap", "--ledger", spent_ledger, "--dataset", DATASET, *args, "--actor", "a", "--reason", "r")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output + result.stderr


def test_missing_or_foreign_files_exit_2(tmp_path):
    for args in (
        ["status", "--ledger", tmp_path / "nope.ledger"],
        ["verify", "--ledger", tmp_path / "nope.ledger"],
        [
            "set-cap",
            "--ledger",
            tmp_path / "nope.ledger",
            "--dataset",
            "d",
            "--epsilon",
            "1",
            "--delta",
            "1e-5",
            "--actor",
            "a",
            "--reason",
            "r",
        ],
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: No such file:"), result.stderr
    text = tmp_path / "notes.txt"
    text.write_text("not a ledger")
    result = invoke("status", "--ledger", text)
    assert result.exit_code == 2 and "not an SQLite file" in result.stderr
    result = invoke(
        "set-cap",
        "--ledger",
        tmp_path,
        "--dataset",
        "d",
        "--epsilon",
        "x",
        "--delta",
        "1e-5",
        "--actor",
        "a",
        "--reason",
        "r",
    )
    assert result.exit_code == 2 and "Traceback" not in result.output

"""`workbench node ...` as hospital IT runs it: init, then check (in a subprocess, on
synthetic data), and the same clear line from `check` and `start` when node.toml is
malformed or the data no longer matches its schema."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _node_helpers import DELTA, PROJECT, set_key, write_ca_certificate
from typer.testing import CliRunner

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.site.audit import audit_path
from federation.site.cli import app
from federation.site.config import load_node_config
from privacy_budgets import Ledger

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def workbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def coordinator():
    """Something listening where the coordinator's SuperLink would (TCP reachability only)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _init(folder: Path, *, subprocess_: bool) -> str:
    args = ["node", "init", "--site-id", "hospital-a", "--data", "data/hospital_01.parquet", "--out", "node-a"]
    if subprocess_:
        done = workbench(*args, cwd=folder)
        assert done.returncode == 0, done.stderr
        return done.stdout
    cwd = os.getcwd()
    os.chdir(folder)  # the command reads its relative paths as a person's shell would
    try:
        done = runner.invoke(app, args[1:])
    finally:
        os.chdir(cwd)
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture
def hospital(request, tmp_path, coordinator):
    """`node init` on synthetic data (in a subprocess where the test is marked so); then
    the CA, the coordinator's address and the ledger's cap and allocation, as the site's
    IT and board would set them."""
    write_hospitals(generate_hospitals(sites=2, rows=300, seed=7), out=tmp_path / "data")
    output = _init(tmp_path, subprocess_=request.node.get_closest_marker("init_in_subprocess") is not None)
    assert "ecdsa-sha2-nistp384 " in output
    # Runnable as printed (on one machine, with the README's coordinator folder).
    assert (
        "workbench coordinator register-node node-a/keys/node_key.pub --name hospital-a --folder coordinator" in output
    )
    toml = tmp_path / "node-a" / "node.toml"
    public = (tmp_path / "node-a" / "keys" / "node_key.pub").read_text().strip()
    assert public in output
    assert stat.S_IMODE((tmp_path / "node-a" / "keys" / "node_key").stat().st_mode) == 0o600
    write_ca_certificate(tmp_path / "node-a" / "ca.crt")
    set_key(toml, "address", f'"{coordinator}"')
    site = load_node_config(toml).site_config()
    assert site.ledger_path.is_file() and f"--ledger {site.ledger_path}" in output, (
        "init makes the site's (empty, signed) ledger and says how to set its cap"
    )
    with Ledger.open(site.ledger_path, site_id=site.site_id, create=False) as ledger:
        assert ledger.verify().ok and ledger.cap(dataset=site.dataset) is None
        ledger.set_cap(dataset=site.dataset, epsilon=5.0, delta=DELTA, actor="site IT", reason="cap")
        ledger.allocate(dataset=site.dataset, project=PROJECT, epsilon=1.0, actor="board", reason="approved")
    return toml


@pytest.mark.init_in_subprocess
def test_init_then_check_passes_every_check(hospital):
    done = workbench("node", "check", "--config", "node-a/node.toml", cwd=hospital.parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "all checks passed."
    checks = {line[5:].split(":")[0]: line[:4].strip() for line in lines[:-1]}
    assert checks == {
        "config": "ok",
        "data": "ok",
        "state folder": "ok",
        "node key": "ok",
        "key folder": "ok",
        "state permissions": "ok",
        "CA certificate": "ok",
        "ledger": "ok",
        "ledger anchors": "ok",
        "audit log": "ok",
        "pause switch": "ok",
        "trusted app signers": "ok",
        "alerts": "WARN",
        "runtime port": "ok",
        "runtime API": "ok",
        "proxy": "ok",
        "coordinator": "ok",
    }
    assert any(
        line.startswith("ok   data: hospital_01.parquet:") and "match dictionary 'synthetic_hospitals'" in line
        for line in lines
    )


def test_a_data_file_that_no_longer_matches_its_schema_stops_check_and_start(hospital):
    import pandas as pd

    data = hospital.parent.parent / "data" / "hospital_01.parquet"
    frame = pd.read_parquet(data)
    frame.loc[frame.index[3], "age"] = 240  # the dictionary says 18-95
    frame.to_parquet(data, index=False)
    expected = "FAIL data: " + str(data) + " does not match its schema: "
    check = workbench("node", "check", "--config", str(hospital), cwd=hospital.parent)
    assert check.returncode == 2  # bad input: the data breaks its dictionary's rules
    line = next(text for text in check.stdout.splitlines() if text.startswith("FAIL"))
    assert line.startswith(expected) and "age" in line and "240" in line and "Fix: fix the data file" in line
    start = runner.invoke(app, ["start", "--config", str(hospital)])  # same app, in process
    assert start.exit_code == 2
    assert line in start.output.splitlines()
    assert "error: the node was not started: fix the FAIL line(s) above" in start.output


def test_a_malformed_node_toml_stops_check_and_start_with_the_same_line(hospital):
    set_key(hospital, "allowed_tasks", '["train", "querry:count"]')
    check = runner.invoke(app, ["check", "--config", str(hospital)])  # same app, in process
    start = workbench("node", "start", "--config", str(hospital), cwd=hospital.parent)
    assert check.exit_code == 2 and start.returncode == 2
    expected = (
        f"FAIL config: {hospital}: [policy] allowed_tasks holds an unknown task kind; got 'querry:count'. "
        "Fix: Did you mean 'query:count'?"
    )
    assert check.output.splitlines()[0].startswith(expected)
    assert start.stderr.splitlines()[0].startswith(expected)


# --- the rest in process (same typer app, no interpreter start) ------------------------------


def test_init_refuses_to_replace_a_node(hospital):
    done = runner.invoke(
        app,
        [
            "init",
            "--site-id",
            "x",
            "--data",
            str(hospital.parent.parent / "data" / "hospital_01.parquet"),
            "--out",
            str(hospital.parent),
        ],
    )
    assert done.exit_code == 2 and "already exist(s)" in done.output and "--force" in done.output


def test_init_refuses_a_missing_data_file(tmp_path):
    done = runner.invoke(app, ["init", "--site-id", "x", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path)])
    assert done.exit_code == 2 and "is not a file" in done.output and not (tmp_path / "node.toml").exists()


def test_pause_status_resume_and_audit_from_the_command_line(hospital):
    config = str(hospital)
    paused = runner.invoke(app, ["pause", "--config", config, "--reason", "data protection review", "--who", "dpo"])
    assert (
        paused.exit_code == 0 and "paused since" in paused.output and "by dpo: data protection review" in paused.output
    )
    status = runner.invoke(app, ["status", "--config", config])
    assert status.exit_code == 0
    assert "PAUSED: paused since" in status.output and "hospital_01" in status.output
    assert PROJECT in status.output  # the ledger's allocation, per project
    resumed = runner.invoke(app, ["resume", "--config", config, "--who", "dpo"])
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    after = runner.invoke(app, ["status", "--config", config]).output
    assert "not paused" in after and "node: stopped" in after  # told from the processes: none runs

    audit = runner.invoke(app, ["audit", "--config", config, "--verify"])
    assert audit.exit_code == 0
    assert "pause" in audit.output and "resume" in audit.output and "chain intact" in audit.output

    log = audit_path(load_node_config(hospital).state_dir)
    log.write_text(log.read_text().replace("data protection review", "routine"))
    tampered = runner.invoke(app, ["audit", "--config", config, "--verify", "--last", "0"])
    assert tampered.exit_code == 4 and "TAMPERED at line 1" in tampered.output  # a record that does not verify


def test_commands_on_a_malformed_node_toml_say_what_to_fix(hospital):
    set_key(hospital, "min_cell_size", "2")
    done = runner.invoke(app, ["status", "--config", str(hospital)])
    assert done.exit_code == 2 and "[policy] min_cell_size must be a whole number of at least 3; got 2" in done.output


def test_init_records_the_ethics_board_in_the_new_ledger(tmp_path):
    from privacy_budgets.simulated_board import SimulatedBoard

    write_hospitals(generate_hospitals(sites=1, rows=200, seed=3), out=tmp_path / "data")
    board = SimulatedBoard.create(tmp_path / "board")
    bad = tmp_path / "bad-board.json"
    bad.write_text('{"quorum": 5, "members": []}')
    data = str(tmp_path / "data" / "hospital_01.parquet")
    refused = runner.invoke(
        app, ["init", "--site-id", "h", "--data", data, "--out", str(tmp_path / "n"), "--board", str(bad)]
    )
    assert refused.exit_code == 2 and "--board" in refused.output and not (tmp_path / "n" / "node.toml").exists()
    done = runner.invoke(
        app,
        [
            "init",
            "--site-id",
            "h",
            "--data",
            data,
            "--out",
            str(tmp_path / "n"),
            "--board",
            str(board.folder / "board.json"),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "with its ethics board 2 of 3" in done.output and "workbench budget propose cap" in done.output
    ledger_path = load_node_config(tmp_path / "n" / "node.toml").site_config().ledger_path
    with Ledger.open(ledger_path, site_id="h", create=False) as ledger:
        assert ledger.board() == board.roster()
        assert [e.kind for e in ledger.entries()] == ["genesis", "board"]

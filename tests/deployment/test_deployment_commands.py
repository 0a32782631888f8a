"""The coordinator's commands and a study run from the command line against real nodes,
and what a node passes to flower-supernode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from federation.coordinator.certificates import certificate_hosts
from federation.processes import engine_env, free_port, pid_alive
from federation.site.supernode import node_config_argument, supernode_command

pytestmark = pytest.mark.slow


def _workbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=engine_env(),
    )


def test_coordinator_commands_init_start_register_status_stop(tmp_path):
    from federation.site.keys import generate_node_keys

    folder = tmp_path / "coord"
    address = f"127.0.0.1:{free_port()}"
    made = _workbench("coordinator", "init", "--address", address, "--folder", str(folder))
    assert made.returncode == 0, made.stderr
    assert certificate_hosts(folder / "tls" / "server.pem")[:2] == ["127.0.0.1", "localhost"]
    assert oct((folder / "tls" / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((folder / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"

    again = _workbench("coordinator", "init", "--address", address, "--folder", str(folder))
    assert again.returncode == 2 and "already a coordinator folder" in again.stderr

    refused = _workbench(
        "coordinator", "register-node", str(tmp_path / "nope.pub"), "--name", "a", "--folder", str(folder)
    )
    assert refused.returncode == 2 and "no public key at" in refused.stderr

    started = _workbench("coordinator", "start", "--folder", str(folder))
    assert started.returncode == 0, started.stderr
    pid = int((folder / "superlink.pid").read_text())
    try:
        assert pid_alive(pid)
        generate_node_keys(private_key=tmp_path / "site_key")
        registered = _workbench(
            "coordinator", "register-node", str(tmp_path / "site_key.pub"), "--name", "site_a", "--folder", str(folder)
        )
        assert registered.returncode == 0, registered.stderr
        assert "site site_a registered" in registered.stdout
        twice = _workbench(
            "coordinator", "register-node", str(tmp_path / "site_key.pub"), "--name", "site_a", "--folder", str(folder)
        )
        assert twice.returncode == 2 and "already registered" in twice.stderr
        status = json.loads(_workbench("coordinator", "status", "--json", "--folder", str(folder)).stdout)
        assert status["running_pid"] == pid and status["registered_sites"] == ["site_a"]
        service = status["study_service"]  # beside the SuperLink, a process of its own
        assert service["running_pid"] and pid_alive(service["running_pid"]) and service["url"] in started.stdout
    finally:
        stopped = _workbench("coordinator", "stop", "--folder", str(folder))
    assert (
        stopped.returncode == 0 and "study service stopped." in stopped.stdout and "SuperLink stopped" in stopped.stdout
    )
    assert not pid_alive(pid) and not pid_alive(service["running_pid"])


def test_study_from_the_command_line_on_the_connected_sites(loopback, tmp_path):
    loopback.allocate(project="cli_study", epsilon=1.0)
    proc = _workbench(
        "study",
        "--coordinator",
        str(loopback.coordinator.folder),
        "--dictionary",
        str(loopback.dictionary_path),
        "--epsilon",
        "1",
        "--rounds",
        "1",
        "--project",
        "cli_study",
        "--out",
        str(tmp_path / "out"),
        "--researcher-key",
        str(loopback.researcher_key),
    )
    assert proc.returncode == 0, proc.stderr
    assert "round 1/1" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rounds_completed"] == 1 and summary["stopped_reason"] == ""
    assert sorted(summary["epsilon_per_site"]) == loopback.sites
    for site in loopback.sites:
        with loopback.ledger(site) as ledger:
            assert summary["epsilon_per_site"][site]["project"] == pytest.approx(
                ledger.spent(dataset=site, project="cli_study")
            )
    receipts = [json.loads(line) for line in (tmp_path / "out" / "receipts.jsonl").read_text().splitlines()]
    assert {r["site_id"] for r in receipts} == set(loopback.sites)


def test_study_needs_data_or_coordinator(tmp_path):
    proc = _workbench("study", "--epsilon", "1", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "give either --data" in proc.stderr


def test_node_passes_tls_auth_its_settings_and_trusted_entities_to_flower(loopback, tmp_path):
    from flwr.common.config import parse_config_args

    from federation.site.config import load_node_config

    base = loopback.node_tomls["hospital_01"]
    trusted = base.parent / "trusted_entities.yaml"
    trusted.write_text(
        "fpk_example: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHGfN6R6g9l7y0m2kGmHdz2dDd3rJmJ0J7xN0u8Vx2yQ'\n"
    )
    text = base.read_text().replace(
        '# trusted_entities = "trusted_entities.yaml"', 'trusted_entities = "trusted_entities.yaml"'
    )
    node_toml = base.parent / "node-trusting.toml"
    node_toml.write_text(text)
    try:
        config = load_node_config(node_toml)
        command = supernode_command(config=config)
    finally:
        node_toml.unlink()
        trusted.unlink()
    assert command[command.index("--trusted-entities") + 1] == str(trusted)
    assert command[command.index("--root-certificates") + 1] == str(config.ca_certificate)
    assert command[command.index("--auth-supernode-private-key") + 1] == str(config.node_private_key)
    # Flower reads back exactly the site's settings, paths included.
    parsed = parse_config_args([command[command.index("--node-config") + 1]])
    assert parsed == config.node_config_entries()


def test_node_config_argument_keeps_quotes_and_refuses_what_flower_cannot_carry():
    from flwr.common.config import parse_config_args

    entries = {"data-path": "/data/St John's/site.csv", "state-dir": r"C:\state dir"}
    assert parse_config_args([node_config_argument(entries)]) == entries
    with pytest.raises(ValueError, match="both quote characters"):
        node_config_argument({"data-path": """/a'b"c"""})

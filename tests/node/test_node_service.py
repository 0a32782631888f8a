"""`workbench node service` / `workbench coordinator service`: systemd units that run
as a dedicated user, write only their state folder, and that systemd itself accepts and
scores (``systemd-analyze verify`` and ``security --offline=true``: systemd is not PID 1
on these machines, so the units are checked, not started)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from federation.coordinator.cli import app as coordinator_app
from federation.coordinator.superlink import Coordinator
from federation.processes import free_port
from federation.service_units import systemd_verdict
from federation.site.cli import app as node_app

runner = CliRunner()
HAS_SYSTEMD_ANALYZE = shutil.which("systemd-analyze") is not None
MOST_EXPOSURE = 2.0  # systemd's scale: 0 locked down ... 10 exposed; a bare unit scores 9.6


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _check_hardening(settings: dict[str, list[str]]) -> None:
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings[key] == [value], key
    assert settings["User"] != ["root"] and settings["User"] == settings["Group"]


def test_the_node_unit_runs_as_its_own_user_and_writes_only_its_state(node, tmp_path):
    config = node.config
    out = tmp_path / "units"
    done = runner.invoke(
        node_app,
        ["service", "--config", str(node.toml), "--out", str(out), "--proxy", "http://proxy.hospital.example:3128"],
    )
    assert done.exit_code == 0, done.output
    unit = out / "workbench-node-hospital-a.service"
    settings = _settings(unit.read_text())
    _check_hardening(settings)
    assert settings["User"] == ["workbench-node"]
    (start,) = settings["ExecStart"]
    assert start.startswith("/") and start.endswith(f"/workbench node start --config {node.toml.resolve()}")
    assert settings["ReadWritePaths"] == [str(config.state_dir)]  # the only writable folder
    read_only = settings["ReadOnlyPaths"][0].split()
    assert str(config.data_path.parent) in read_only and str(config.node_private_key.parent) in read_only
    environment = dict(v.strip('"').split("=", 1) for v in settings["Environment"])
    assert environment["FLWR_HOME"].startswith(str(config.state_dir))  # ~/.flwr is hidden by ProtectHome
    assert environment["NO_PROXY"] == "127.0.0.1,localhost,::1"
    assert environment["HTTPS_PROXY"] == "http://proxy.hospital.example:3128"
    assert (out / "workbench-node.conf").read_text().startswith('u workbench-node - "Hospital DP workbench node" ')
    assert "systemctl enable --now workbench-node-hospital-a.service" in done.output


def test_the_coordinator_unit_runs_the_superlink_in_the_foreground_and_writes_only_its_folder(tmp_path):
    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address=f"127.0.0.1:{free_port()}")
    out = tmp_path / "units"
    done = runner.invoke(coordinator_app, ["service", "--folder", str(coordinator.folder), "--out", str(out)])
    assert done.exit_code == 0, done.output
    settings = _settings((out / "workbench-coordinator.service").read_text())
    _check_hardening(settings)
    assert settings["Type"] == ["simple"] and settings["KillMode"] == ["mixed"]
    assert settings["ReadWritePaths"] == [str(coordinator.folder)]
    assert settings["ReadOnlyPaths"] == [str(coordinator.folder / "tls")]
    assert settings["ExecStart"][0].endswith(f"/workbench coordinator run --folder {coordinator.folder}")


@pytest.mark.skipif(
    not HAS_SYSTEMD_ANALYZE, reason="systemd-analyze is not installed (Debian: apt-get install systemd)"
)
def test_systemd_accepts_both_units_and_scores_them_locked_down(node, tmp_path):
    runner.invoke(node_app, ["service", "--config", str(node.toml), "--out", str(tmp_path / "n")])
    coordinator = Coordinator.init(folder=tmp_path / "coordinator", address=f"127.0.0.1:{free_port()}")
    runner.invoke(coordinator_app, ["service", "--folder", str(coordinator.folder), "--out", str(tmp_path / "c")])
    for unit in (
        tmp_path / "n" / "workbench-node-hospital-a.service",
        tmp_path / "c" / "workbench-coordinator.service",
    ):
        verified, said, score = systemd_verdict(unit)
        assert verified, said
        assert score is not None and score <= MOST_EXPOSURE, score
    # A bare unit, for scale: the same command without any hardening.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert systemd_verdict(bare)[2] > 9.0

"""`make wheelhouse`, then an install on a machine without a package index, then
`workbench node check`: in a fresh virtual environment with every other source of
packages switched off. These machines preset pip with find-links and file indexes
(PIP_FIND_LINKS, /etc/pip.conf, /etc/xdg/pip): PIP_CONFIG_FILE=/dev/null makes pip read
no configuration file at all, and every PIP_* variable is dropped, so only the
wheelhouse can satisfy the install (otherwise the test would pass vacuously).

Slow: the wheelhouse is about 100 wheels and 500 MB (torch's CPU build, ray for Flower's
simulation); the install skips byte-compiling (--no-compile) to stay within minutes on
two shared cores. torch's wheel is not built: pip copies the CPU wheel that the pinned
constraints resolve to (on these machines, the one in /opt/wheels)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _node_helpers import set_key, write_ca_certificate

ROOT = Path(__file__).resolve().parents[2]


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_wheelhouse_then_an_offline_install_runs_node_check(node, tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    made = subprocess.run(
        ["make", "--no-print-directory", "wheelhouse", f"WHEELHOUSE={wheelhouse}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    wheels = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"hospital_dp_workbench", "torch", "flwr", "opacus", "prometheus_client"} <= wheels

    env = _offline_env()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    python = venv / "bin" / "python"
    # The index is switched off twice: --no-index, and an unreachable index URL (a try would fail).
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "--no-index", "--find-links", str(wheelhouse)]
        + ["--index-url", "http://127.0.0.1:9/simple", "hospital-dp-workbench"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    # The node as a hospital would have it: the coordinator's CA, a coordinator that answers.
    write_ca_certificate(node.toml.parent / "ca.crt")
    with socket.create_server(("127.0.0.1", 0)) as coordinator:
        set_key(node.toml, "address", f'"127.0.0.1:{coordinator.getsockname()[1]}"')
        check = subprocess.run(
            [str(venv / "bin" / "workbench"), "node", "check", "--config", str(node.toml)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines()[-1] == "all checks passed."
    where = subprocess.run(
        [str(python), "-c", "import federation; print(federation.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(venv))  # the installed copy ran, not this checkout

"""A locked coordinator and locked nodes, tried from outside with real processes.

The coordinator is started with the project's CLI (`workbench coordinator init`,
`start`). An outsider holds what every site holds, the public `ca.crt`, and a Flower
home of its own pointed at the address the sites dial: registering a node key,
`flwr run` of its own app bundle, and a Runtime API task request there all fail, and
its ServerApp (which would write a marker file) never runs. The same bundle sent by
the operator on the coordinator's machine does run: the marker is a real witness, and
the lock, not a broken bundle, is what stopped the outsider.

A node's Runtime API hands tasks only to requests signed with the node's own secret
(on the loopback federation of this package): another local user who finds the port
cannot take the site's tasks.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from federation.coordinator.api_gate import SITES_ONLY
from federation.coordinator.superlink import CONNECTION, Coordinator
from federation.processes import BIN_DIR, engine_env, free_port

pytestmark = pytest.mark.slow

OUTSIDER_APP = """
from pathlib import Path

from flwr.serverapp import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    Path(str(context.run_config["marker"])).write_text("the outsider's ServerApp ran on the coordinator")
"""


def _workbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=180, env=engine_env()
    )


def _flwr(home: Path, *args: str, cwd: Path) -> dict:
    proc = subprocess.run(
        [str(BIN_DIR / "flwr"), *args, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=engine_env({"FLWR_HOME": str(home)}),
        cwd=cwd,
    )
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def _acquire(address: str, master_secret: bytes | None, *, task_type: str = "CLIENT_APP", ca: Path | None = None):
    """One Runtime API task request, as Flower's SuperExec sends it (signed when given a
    secret), without Flower's retries (its invoker answers a 401 by interrupting its process)."""
    from federation.site.flwr_compat import runtime_protocol
    from federation.site.site_executor import ACQUIRE_TASK

    rt = runtime_protocol()
    interceptors = [rt.RuntimeVersionHttpInterceptor(component_name="SuperExec")]
    if master_secret is not None:
        interceptors.append(
            rt.SuperExecAuthHttpInterceptor(master_secret=master_secret, protected_methods=[ACQUIRE_TASK])
        )
    client = rt.RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=ca is None,
        root_certificates=None if ca is None else ca.read_bytes(),
        interceptors=interceptors,
        retry_invoker=None,
    )
    try:
        kind = str(getattr(rt.TaskType, task_type))
        return client.AcquireTask(rt.AcquireTaskRequest(supported_task_types=[kind]))
    finally:
        client.close()


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("locked") / "coordinator"
    made = _workbench("coordinator", "init", "--folder", str(folder), "--address", f"127.0.0.1:{free_port()}")
    assert made.returncode == 0, made.stderr
    started = _workbench("coordinator", "start", "--folder", str(folder))
    assert started.returncode == 0, started.stderr
    assert "(Fleet API only)" in started.stdout and "(this machine only)" in started.stdout
    try:
        yield Coordinator.open(folder)
    finally:
        _workbench("coordinator", "stop", "--folder", str(folder))


@pytest.fixture
def outsider(coordinator, tmp_path):
    """A Flower home with only the public ca.crt, pointed at the address the sites dial,
    a node key of its own and an app bundle whose ServerApp writes a marker."""
    home = tmp_path / "outsider"
    home.mkdir()
    shutil.copy(coordinator.tls.ca_certificate, home / "ca.crt")
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{coordinator.address}"\nroot-certificates = "{home / "ca.crt"}"\n'
    )
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", str(home / "key")], check=True)
    app = tmp_path / "outsider_app"
    app.mkdir()
    (app / "outsider_app.py").write_text(OUTSIDER_APP)
    marker = tmp_path / "marker.txt"
    (app / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "outsider-app"\nversion = "1.0.0"\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["."]\n\n'
        '[tool.flwr.app]\npublisher = "outsider"\n\n'
        '[tool.flwr.app.components]\nserverapp = "outsider_app:app"\nclientapp = "outsider_app:app"\n\n'
        f'[tool.flwr.app.config]\nmarker = "{marker}"\n'
    )
    return home, app, marker


def test_an_outsider_with_only_the_ca_can_neither_register_run_nor_take_tasks(coordinator, outsider):
    home, app, marker = outsider
    operator = coordinator.flwr_home

    registered = _flwr(home, "supernode", "register", str(home / "key.pub"), CONNECTION, cwd=home)
    assert registered["success"] is False and SITES_ONLY in registered["error-message"]
    ran = _flwr(home, "run", str(app), CONNECTION, cwd=home)
    assert ran["success"] is False and SITES_ONLY in ran["error-message"]
    listed = _flwr(home, "ls", CONNECTION, cwd=home)
    assert listed["success"] is False and SITES_ONLY in listed["error-message"]

    # A Runtime API task request (what a ServerApp executor sends) on the sites' address.
    with httpx.Client(verify=ssl.create_default_context(cafile=home / "ca.crt"), timeout=10) as client:
        answer = client.post(
            f"https://{coordinator.address}/v1/runtime/acquire-task",
            content=b"",
            headers={"content-type": "application/protobuf"},
        )
        assert answer.status_code == 403 and answer.json()["detail"] == SITES_ONLY
        # What the sites need still answers there.
        assert client.get(f"https://{coordinator.address}/health").status_code == 200
        assert client.post(f"https://{coordinator.address}/v1/fleet/register-node").status_code == 403

    # Nothing of the outsider reached the SuperLink: no node registered, no run made.
    assert _flwr(operator, "supernode", "ls", CONNECTION, cwd=coordinator.folder)["nodes"] == []
    assert _flwr(operator, "ls", CONNECTION, cwd=coordinator.folder)["runs"] == []
    time.sleep(2)  # a ServerApp started by the refused run would have written by now
    assert not marker.exists()

    # On the operator's port, a ServerApp task goes only to Flower's executor that holds the
    # coordinator's secret (--isolation process): a local user without it is refused.
    assert coordinator.serverapp_secret.stat().st_mode & 0o777 == 0o600
    for stranger in (None, b"a guess at the secret"):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            _acquire(coordinator.operator_address, stranger, task_type="SERVER_APP", ca=home / "ca.crt")
        assert refused.value.response.status_code == 401

    # The witness works: the same bundle, sent by the operator on the coordinator's machine, runs.
    assert _flwr(operator, "run", str(app), CONNECTION, cwd=coordinator.folder)["success"] is True
    deadline = time.monotonic() + 90
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marker.read_text() == "the outsider's ServerApp ran on the coordinator"


def test_the_operator_registers_nodes_on_the_coordinators_machine(coordinator, outsider):
    home, _, _ = outsider
    registered = _flwr(coordinator.flwr_home, "supernode", "register", str(home / "key.pub"), CONNECTION, cwd=home)
    assert registered["success"] is True
    nodes = _flwr(coordinator.flwr_home, "supernode", "ls", CONNECTION, cwd=coordinator.folder)["nodes"]
    assert len(nodes) == 1


def test_a_local_user_without_the_nodes_secret_cannot_take_its_tasks(loopback):
    from federation.site.runtime_secret import secret_path

    config = loopback.node_config("hospital_01")
    secret = secret_path(config.state_dir)
    assert secret.stat().st_mode & 0o777 == 0o600
    supernode = Path(f"/proc/{loopback.nodes['hospital_01'].pids()['supernode']}/cmdline").read_bytes().split(b"\0")
    assert supernode[supernode.index(b"--superexec-auth-secret-file") + 1] == str(secret).encode()

    for stranger in (None, b"a guess at the secret"):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            _acquire(config.clientappio_address, stranger)
        assert refused.value.response.status_code == 401
    # The node's own secret is what the SuperNode accepts (no study runs now: no task to take).
    assert not _acquire(config.clientappio_address, secret.read_bytes()).HasField("task")

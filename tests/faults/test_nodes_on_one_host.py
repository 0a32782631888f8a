"""Two hospital nodes on one machine, made by `workbench node init` with its defaults and
started with `workbench node start --detach`: each gets its own Runtime port, a second
start is refused with the running PID, `node check` names a taken port with its fix,
`node status` and `coordinator status` tell what runs from the processes and the SuperLink."""

from __future__ import annotations

import json
import re

import pytest

from federation.processes import pid_alive, split_address
from federation.site.supernode import runtime_of

from ._faults_helpers import workbench

pytestmark = pytest.mark.slow


def test_two_nodes_from_init_defaults_run_side_by_side(running):
    ports = {site: split_address(running.config(site).clientappio_address)[1] for site in running.sites}
    assert len(set(ports.values())) == 2 and 9094 not in ports.values()  # not Flower's one default
    for site in running.sites:
        said = running.start_outputs[site]
        # --detach returns once the node is connected, and says so.
        assert re.search(
            rf"site {site}: connected to the coordinator at 127\.0\.0\.1:\d+; running in the background", said
        )
        assert f"workbench node stop --config {running.tomls[site]}" in said
        status = running.node("status", "--json", site=site)
        assert status.returncode == 0, status.stderr
        node = json.loads(status.stdout)["node"]
        assert node["state"] == "connected"
        assert all(pid_alive(node[k]) for k in ("supervisor_pid", "supernode_pid", "executor_pid"))
    coordinator = workbench("coordinator", "status", "--folder", str(running.coordinator))
    assert coordinator.returncode == 0, coordinator.stderr
    for site in running.sites:
        assert re.search(rf"  {site}: online since ", coordinator.stdout), coordinator.stdout


def test_a_second_start_is_refused_with_the_running_pid(running):
    site = "hospital_01"
    before = runtime_of(running.config(site))
    again = running.node("start", "--detach", site=site)
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"error: site {site}'s node already runs: connected (node PID {before.supervisor}" in again.stderr
    assert f"`workbench node stop --config {running.tomls[site]}`" in again.stderr
    assert "Traceback" not in again.stderr
    assert runtime_of(running.config(site)).supervisor == before.supervisor  # untouched


def test_node_check_fails_on_a_taken_runtime_port_with_the_fix(running, tmp_path):
    taken = running.config("hospital_02").clientappio_address
    copy = tmp_path / "node.toml"
    text = running.tomls["hospital_01"].read_text()
    own = running.config("hospital_01").clientappio_address
    copy.write_text(
        text.replace(f'"{own}"', f'"{taken}"').replace(
            'dir = "state"', f'dir = "{running.tomls["hospital_01"].parent / "state2"}"'
        )
    )
    # Relative paths of the copy are read against its own folder: point them back. The
    # copy gets its own key folder (the node key, not hospital_01's ledger key and heads:
    # its fresh state2 would rightly fail the anchor check against them).
    original = running.tomls["hospital_01"].parent
    (tmp_path / "ca.crt").symlink_to(original / "ca.crt")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    keys.chmod(0o700)
    for name in ("node_key", "node_key.pub"):
        (keys / name).symlink_to(original / "keys" / name)
    check = workbench("node", "check", "--config", str(copy))
    line = next(x for x in check.stdout.splitlines() if x.startswith("FAIL runtime port"))
    assert f"[node] clientappio_address {taken} is in use by another program" in line
    assert re.search(r'Fix: set clientappio_address = "127\.0\.0\.1:\d+" \(a free port now\)', line)
    assert check.returncode == 2, check.stdout

"""One loopback federation for the fault tests, set up as the READMEs tell an operator to:
a coordinator (`workbench coordinator init/start/register-node`) and two hospital nodes on
this one machine, each made by `workbench node init` with its defaults and started with
`workbench node start --detach`. Package scope: started once, stopped by PID at the end.

Timeouts are shortened by configuration, never by sleeping: the nodes beat every 10 s
(Flower's shortest, so a crashed node is held online 20 s), the studies pass
``--site-timeout``/``--timeout``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.coordinator.registry import register_node
from federation.coordinator.superlink import Coordinator
from federation.processes import free_port
from federation.site.config import NodeConfig, load_node_config
from federation.site.supernode import stop_node
from privacy_budgets import Ledger

from ._faults_helpers import workbench

SITES = ("hospital_01", "hospital_02")
SITE_IT = "site IT (faults)"
BOARD = "ethics board (faults)"
RESEARCHER = "Researcher (faults)"


@dataclass
class Federation:
    root: Path
    coordinator: Path
    dictionary: Path
    tomls: dict[str, Path]
    start_outputs: dict[str, str]

    @property
    def sites(self) -> list[str]:
        return list(SITES)

    def config(self, site: str) -> NodeConfig:
        return load_node_config(self.tomls[site])

    def ledger(self, site: str) -> Ledger:
        return Ledger.open(self.config(site).site_config().ledger_path, site_id=site)

    def spent(self, site: str, project: str) -> float:
        with self.ledger(site) as ledger:
            return ledger.spent(dataset=site, project=project)

    @property
    def researcher_key(self) -> Path:
        """The researcher's key (unencrypted): `node init` makes nodes that serve only signed requests."""
        return self.root / "researcher" / "id_ed25519"

    def allocate(self, project: str, epsilon: float = 1.0) -> None:
        """The board's allocation, and its approval of the researcher's key for the project."""
        from privacy_budgets.signatures import SshPublicKey

        key = SshPublicKey.load(f"{self.researcher_key}.pub").openssh(comment=False)
        for site in SITES:
            with self.ledger(site) as ledger:
                ledger.allocate(dataset=site, project=project, epsilon=epsilon, actor=BOARD, reason=project)
                researchers = [{"name": RESEARCHER, "key": key}]
                ledger.approve(
                    dataset=site, project=project, purpose=project, researchers=researchers, actor=BOARD, reason=project
                )

    def node(self, *args: str, site: str, timeout: float = 300):
        return workbench("node", *args, "--config", str(self.tomls[site]), timeout=timeout)

    def study_args(self, *, project: str, rounds: int = 1, site_timeout: float = 60, timeout: float = 300) -> list:
        return [
            "study",
            "--coordinator",
            str(self.coordinator),
            "--dictionary",
            str(self.dictionary),
            "--epsilon",
            "1",
            "--rounds",
            str(rounds),
            "--project",
            project,
            "--out",
            str(self.root / "out" / project),
            "--site-timeout",
            str(site_timeout),
            "--timeout",
            str(timeout),
            "--researcher-key",
            str(self.researcher_key),
        ]


def _build(root: Path) -> Federation:
    from privacy_budgets.signatures import generate_key_pair

    generate_key_pair(path=root / "researcher" / "id_ed25519", passphrase=None, comment=RESEARCHER)
    data = root / "data"
    write_hospitals(generate_hospitals(sites=len(SITES), rows=300, seed=11), out=data)
    coordinator = root / "coordinator"
    address = f"127.0.0.1:{free_port()}"
    done = workbench("coordinator", "init", "--address", address, "--folder", str(coordinator))
    assert done.returncode == 0, done.stderr
    done = workbench("coordinator", "start", "--folder", str(coordinator))
    assert done.returncode == 0, done.stderr
    tomls = {}
    for site in SITES:
        folder = root / "sites" / site
        done = workbench(
            "node", "init", "--site-id", site, "--data", str(data / f"{site}.parquet"), "--out", str(folder),
            "--coordinator", address,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        shutil.copy(coordinator / "tls" / "ca.crt", folder / "ca.crt")  # what hospital IT receives
        tomls[site] = folder / "node.toml"
        config = load_node_config(tomls[site])
        with Ledger.open(config.site_config().ledger_path, site_id=site) as ledger:
            ledger.set_cap(dataset=site, epsilon=20.0, delta=1e-5, actor=SITE_IT, reason="lifetime cap")
        # The README's `workbench coordinator register-node`, in process (the CLI is tested elsewhere).
        with Ledger.open(config.site_config().ledger_path, site_id=site) as ledger:
            ledger_key = ledger.public_key
        register_node(
            coordinator=Coordinator.open(coordinator),
            public_key=config.node_public_key,
            name=site,
            ledger_key=ledger_key,
        )
    return Federation(
        root=root,
        coordinator=coordinator,
        dictionary=data / "data_dictionary.json",
        tomls=tomls,
        start_outputs={},
    )


@pytest.fixture(scope="package")
def federation(tmp_path_factory) -> Federation:
    fed = _build(tmp_path_factory.mktemp("faults"))
    try:
        for site in SITES:
            started = fed.node("start", "--detach", site=site)
            assert started.returncode == 0, started.stdout + started.stderr
            fed.start_outputs[site] = started.stdout
        yield fed
    finally:
        for site in SITES:
            stop_node(config=fed.config(site))
        workbench("coordinator", "stop", "--folder", str(fed.coordinator))


@pytest.fixture
def running(federation):
    """The federation, with both nodes connected (a test that stopped one starts it again)."""
    from federation.site.supernode import runtime_of

    for site in SITES:
        if runtime_of(federation.config(site)).state != "connected":
            started = federation.node("start", "--detach", site=site)
            assert started.returncode == 0, started.stdout + started.stderr
    return federation


def pytest_collection_modifyitems(items):
    """The test that stops the coordinator mid-study runs last of this package: the others
    share it (and the package's federation is built once)."""
    last = [item for item in items if "coordinator_stopped" in item.nodeid]
    for item in last:
        items.remove(item)
    ours = [i for i, item in enumerate(items) if "tests/faults/" in item.nodeid]
    at = (max(ours) + 1) if ours else len(items)
    items[at:at] = last

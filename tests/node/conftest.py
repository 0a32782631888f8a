"""A hospital node on disk: real data file, dictionary, ledger (cap and allocation),
node.toml and key pair; no Flower engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from _node_helpers import DELTA, PROJECT

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, generate_hospitals
from federation.site.config import NodeConfig, load_node_config, write_node_template
from federation.site.keys import generate_node_keys
from federation.site.ledger_keys import open_site_ledger


@pytest.fixture(scope="session")
def hospitals():
    return generate_hospitals(sites=2, rows=400, seed=3)


@dataclass
class Node:
    toml: Path

    @property
    def config(self) -> NodeConfig:
        return load_node_config(self.toml)

    @property
    def site(self):
        return self.config.site_config()


@pytest.fixture
def node(tmp_path, hospitals) -> Node:
    """hospital_01 with a cap of 10 and an allocation of 3 for PROJECT."""
    data = tmp_path / "data"
    data.mkdir()
    frame = hospitals.sites["hospital_01"]
    frame.to_parquet(data / "hospital_01.parquet", index=False)
    SYNTHETIC_HOSPITALS_DICTIONARY.save(data / "data_dictionary.json")
    root = tmp_path / "node"
    toml = root / "node.toml"
    write_node_template(
        path=toml,
        site_id="hospital-a",
        data_path=data / "hospital_01.parquet",
        state_dir=root / "state",
        coordinator_address="127.0.0.1:9092",
    )
    generate_node_keys(private_key=root / "keys" / "node_key", comment="hospital-a")
    made = Node(toml=toml)
    site = made.site
    site.state_dir.mkdir(parents=True, mode=0o700)
    site.state_dir.chmod(0o700)  # owner-only, as `node init` makes it (ledger_keys.py)
    with open_site_ledger(site) as ledger:
        ledger.set_cap(dataset=site.dataset, epsilon=10.0, delta=DELTA, actor="site IT", reason="test cap")
        ledger.allocate(
            dataset=site.dataset, project=PROJECT, epsilon=3.0, actor="ethics board", reason="test allocation"
        )
    return made


def pytest_configure(config):
    config.addinivalue_line("markers", "init_in_subprocess: the node fixture runs `node init` as a real process")

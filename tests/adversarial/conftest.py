"""A hospital node on disk, attacked through its ClientApp: real data (Parquet), its data
dictionary, a SQLite ledger (cap 10, PROJECT allocated 3), node.toml with the default
policy of `workbench node init`, an audit log. No Flower engine: every attack is a real
Flower Message handed to the deployed ClientApp (`federation.site.client_app.app`)."""

from __future__ import annotations

import pytest
from _adversary import DELTA, OTHER, PROJECT, Site

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, generate_hospitals
from federation.site.config import write_node_template
from privacy_budgets import Ledger


@pytest.fixture(scope="session")
def frame():
    return generate_hospitals(sites=2, rows=400, seed=3).sites["hospital_01"]


@pytest.fixture
def site(tmp_path, frame) -> Site:
    data = tmp_path / "data"
    data.mkdir()
    frame.to_parquet(data / "hospital_01.parquet", index=False)
    SYNTHETIC_HOSPITALS_DICTIONARY.save(data / "data_dictionary.json")
    root = tmp_path / "node"
    write_node_template(
        path=root / "node.toml",
        site_id="hospital-a",
        data_path=data / "hospital_01.parquet",
        state_dir=root / "state",
        coordinator_address="127.0.0.1:9092",
    )
    made = Site(toml=root / "node.toml", frame=frame, root=tmp_path)
    config = made.config.site_config()
    config.state_dir.mkdir(parents=True)
    with Ledger.open(config.ledger_path, site_id=config.site_id) as ledger:
        ledger.set_cap(dataset=config.dataset, epsilon=10.0, delta=DELTA, actor="site IT", reason="adversarial tests")
        for project, epsilon in ((PROJECT, 3.0), (OTHER, 4.0)):
            ledger.allocate(dataset=config.dataset, project=project, epsilon=epsilon, actor="board", reason="tests")
    return made

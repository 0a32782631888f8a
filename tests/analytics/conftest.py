"""Sites with real data files, real ledgers and real caches, for the analytics tests."""

from __future__ import annotations

import pytest
from _analytics_helpers import DELTA, PROJECT

from datasets_synthetic import SYNTHETIC_HOSPITALS_DICTIONARY, generate_hospitals
from federation.site.site_config import SiteConfig
from privacy_budgets import Ledger


@pytest.fixture(scope="session")
def hospitals():
    """Two synthetic hospitals (600 and 2400 patients) with known truth."""
    return generate_hospitals(sites=2, rows=1500, seed=11)


@pytest.fixture(scope="session")
def dictionary():
    return SYNTHETIC_HOSPITALS_DICTIONARY


@pytest.fixture
def make_site(tmp_path):
    """A site on disk: its data file, dictionary, state folder, and a ledger with a cap
    and an allocation for PROJECT."""

    def make(frame, *, site_id="hospital_01", cap=50.0, allocation=20.0, **rules) -> SiteConfig:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        path = data / f"{site_id}.parquet"
        frame.to_parquet(path, index=False)
        dictionary_path = data / "data_dictionary.json"
        SYNTHETIC_HOSPITALS_DICTIONARY.save(dictionary_path)
        site = SiteConfig(
            site_id=site_id,
            data_path=path,
            state_dir=tmp_path / "state" / site_id,
            dictionary_path=dictionary_path,
            **rules,
        )
        site.state_dir.mkdir(parents=True, exist_ok=True)
        with Ledger.open(site.ledger_path, site_id=site_id) as ledger:
            ledger.set_cap(dataset=site.dataset, epsilon=cap, delta=DELTA, actor="site IT", reason="test cap")
            if allocation:
                ledger.allocate(
                    dataset=site.dataset,
                    project=PROJECT,
                    epsilon=allocation,
                    actor="ethics board",
                    reason="test allocation",
                )
        return site

    return make

"""A site's encoded arrays are kept between messages of one process, and read again
when anything they depend on changes."""

from __future__ import annotations

import os

import pytest

from datasets_synthetic import generate_hospitals, write_hospitals
from federation.data.dictionary import DataDictionary
from federation.site.config import NodePolicy
from federation.site.data_access import site_arrays
from federation.site.site_config import SiteConfig
from federation.training.features import FeatureEncoder


@pytest.fixture()
def site(tmp_path):
    data = write_hospitals(generate_hospitals(sites=1, rows=200, seed=3), out=tmp_path / "data")
    path = next(data.glob("*.parquet"))
    return SiteConfig(
        site_id=path.stem, data_path=path, state_dir=tmp_path / "state", dictionary_path=data / "data_dictionary.json"
    )


def _encoder(site: SiteConfig) -> FeatureEncoder:
    return FeatureEncoder.from_dictionary(dictionary=DataDictionary.load(site.dictionary_path))


def test_same_file_and_study_reuses_the_arrays(site):
    policy = NodePolicy.default_for(site)
    first = site_arrays(site=site, policy=policy, encoder=_encoder(site))
    assert site_arrays(site=site, policy=policy, encoder=_encoder(site)) is first


def test_another_split_or_a_changed_file_is_read_again(site):
    policy = NodePolicy.default_for(site)
    first = site_arrays(site=site, policy=policy, encoder=_encoder(site))
    # the site's own split: another seed in its policy is another split
    reseeded = NodePolicy.default_for(SiteConfig(**{**site.__dict__, "policy_overrides": (("holdout_seed", 5),)}))
    other_split = site_arrays(site=site, policy=reseeded, encoder=_encoder(site))
    assert other_split is not first
    assert not (other_split.y_test.shape == first.y_test.shape and (other_split.x_test == first.x_test).all())
    # Rewrite the file with fewer rows: the site must train on what the file holds now.
    import pandas as pd

    frame = pd.read_parquet(site.data_path).iloc[:100]
    frame.to_parquet(site.data_path)
    os.utime(site.data_path, ns=(1, 1))  # a different modification time, whatever the clock
    again = site_arrays(site=site, policy=policy, encoder=_encoder(site))
    assert len(again.y_train) + len(again.y_test) == 100

"""Synthetic hospitals: determinism, different sites, argument checks, files that validate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from datasets_synthetic import GroundTruth, generate_hospitals, write_hospitals
from datasets_synthetic.generator import site_ids
from federation.data.loader import load_sites


@pytest.fixture(scope="module")
def federation():
    return generate_hospitals(sites=4, rows=2000, seed=7)


def test_same_seed_gives_identical_frames_and_files(federation, tmp_path):
    again = generate_hospitals(sites=4, rows=2000, seed=7)
    assert list(again.sites) == list(federation.sites)
    for site_id, frame in federation.sites.items():
        pd.testing.assert_frame_equal(again.sites[site_id], frame)
    first = write_hospitals(federation, out=tmp_path / "a")
    second = write_hospitals(again, out=tmp_path / "b")
    for path in sorted(first.iterdir()):
        assert (second / path.name).read_bytes() == path.read_bytes(), path.name


def test_different_seeds_give_different_data(federation):
    other = generate_hospitals(sites=4, rows=2000, seed=8)
    assert not other.sites["hospital_01"].equals(federation.sites["hospital_01"])
    assert other.truth.site_effects != federation.truth.site_effects


def test_sites_differ_in_size_and_case_mix(federation):
    sizes = [len(f) for f in federation.sites.values()]
    assert len(set(sizes)) == 4
    assert min(sizes) >= 0.4 * 2000 and max(sizes) <= 1.6 * 2000
    assert sum(sizes) == pytest.approx(4 * 2000, abs=4)  # evenly spaced around `rows`
    mean_age = [f["age"].mean() for f in federation.sites.values()]
    smokers = [f["smoker"].mean() for f in federation.sites.values()]
    emergency = [(f["admission_type"] == "emergency").mean() for f in federation.sites.values()]
    assert max(mean_age) - min(mean_age) > 2  # years
    assert max(smokers) - min(smokers) > 0.03
    assert max(emergency) - min(emergency) > 0.05


def test_columns_types_and_ranges_follow_the_dictionary(federation):
    dictionary = federation.dictionary
    for frame in federation.sites.values():
        assert list(frame.columns) == list(dictionary.column_names)
        for spec in dictionary.columns:
            values = frame[spec.name]
            if spec.kind == "categorical":
                assert list(values.cat.categories) == list(spec.categories)
            else:
                assert values.dtype == (np.float64 if spec.kind == "numeric" else np.int64)
                assert values.between(spec.minimum, spec.maximum).all(), spec.name
    assert dictionary.target == "cardiac_event"
    assert (dictionary.time_column, dictionary.event_column) == ("followup_days", "event_observed")
    assert "cardiac_event" not in dictionary.feature_columns


def test_every_site_validates_after_a_parquet_round_trip(federation, tmp_path):
    out = write_hospitals(federation, out=tmp_path / "sites")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "data_dictionary.json",
        "ground_truth.json",
        "hospital_01.parquet",
        "hospital_02.parquet",
        "hospital_03.parquet",
        "hospital_04.parquet",
    ]
    loaded = load_sites(folder=out)
    assert list(loaded) == list(federation.sites)
    for site_id, site in loaded.items():
        pd.testing.assert_frame_equal(site.frame, federation.sites[site_id])
        assert site.warnings == ()
    truth = GroundTruth.from_json(json.loads((out / "ground_truth.json").read_text()))
    assert truth == federation.truth


def test_write_refuses_to_mix_data_sets_unless_told(federation, tmp_path):
    out = write_hospitals(federation, out=tmp_path / "sites")
    write_hospitals(federation, out=out)  # identical content: a harmless no-op
    smaller = generate_hospitals(sites=2, rows=100, seed=1)
    with pytest.raises(FileExistsError, match=r"already holds different site data \(hospital_01\.parquet differs;"):
        write_hospitals(smaller, out=out)
    write_hospitals(smaller, out=out, overwrite=True)
    assert sorted(p.name for p in out.glob("*.parquet")) == ["hospital_01.parquet", "hospital_02.parquet"]
    assert list(load_sites(folder=out)) == ["hospital_01", "hospital_02"]


def test_site_ids_are_zero_padded():
    assert list(generate_hospitals(sites=3, rows=20, seed=1).sites) == ["hospital_01", "hospital_02", "hospital_03"]
    ids = site_ids(sites=120)
    assert ids[0] == "hospital_001" and ids[-1] == "hospital_120"
    assert len(generate_hospitals(sites=1, rows=20, seed=1).sites["hospital_01"]) == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": 0}, r"sites must be a whole number from 1 to 999, got 0"),
        ({"sites": 2.5}, r"sites must be a whole number from 1 to 999, got 2.5"),
        ({"rows": 19}, r"rows \(average rows per site\) must be a whole number >= 20, got 19"),
        ({"seed": -1}, r"seed must be a whole number >= 0, got -1"),
        ({"size_spread": 1.0}, r"size_spread must be a number in \[0, 1\)"),
    ],
)
def test_bad_arguments_state_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_hospitals(**kwargs)

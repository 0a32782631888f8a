"""FLamby's Fed-Heart-Disease rows and split, read from the real UCI files."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.heart_disease.data import (
    DEFAULT_FOLDER,
    SPLIT_COLUMN,
    HeartDataMissing,
    encoder,
    load_centres,
    majority_baseline,
    validation_folds,
    write_site_folder,
)
from federation.data.dictionary import DataDictionary
from federation.data.loader import load_site
from federation.training.features import prepare_site_arrays

needs_data = pytest.mark.skipif(
    not (DEFAULT_FOLDER / "processed.cleveland.data").is_file(),
    reason=f"the UCI heart-disease files are not at {DEFAULT_FOLDER} on this machine",
)


@pytest.fixture(scope="module")
def centres():
    return load_centres(folder=DEFAULT_FOLDER)


@needs_data
def test_flamby_rows_and_split_sizes(centres):
    # FLamby keeps 303/261/46/130 rows; 0.66 of each is training data.
    kept = {name: len(c.frame) for name, c in centres.items()}
    assert kept == {"cleveland": 303, "hungarian": 261, "switzerland": 46, "va": 130}
    for c in centres.values():
        assert len(c.y_train) + len(c.y_test) == len(c.frame)
        assert abs(len(c.y_test) / len(c.frame) - 0.34) < 0.01


@needs_data
def test_split_reproduces_flambys_majority_baseline(centres):
    # The README of the data folder states 0.721 for FLamby's split.
    assert round(float(np.mean(list(majority_baseline(centres=centres).values()))), 3) == 0.721


@needs_data
def test_features_use_public_constants_only(centres):
    for c in centres.values():
        x = np.vstack([c.x_train, c.x_test])
        assert x.shape[1] == encoder().n_features
        assert x.min() >= 0.0 and x.max() <= 1.0
    # Switzerland's cholesterol is recorded as 0 (not measured): missing, flagged.
    names = encoder().feature_names
    swiss = centres["switzerland"]
    assert swiss.x_train[:, names.index("chol missing")].all()


@needs_data
def test_site_files_carry_the_split_the_site_trains_on(centres, tmp_path):
    folder = write_site_folder(centres=centres, out=tmp_path / "sites")
    dictionary = DataDictionary.load(folder / "data_dictionary.json")
    assert SPLIT_COLUMN not in dictionary.feature_columns
    frame = load_site(path=folder / "va.csv", dictionary=dictionary)
    arrays = prepare_site_arrays(
        frame=frame, encoder=encoder(), test_fraction=0.25, seed=0, site_id="va", split_column=SPLIT_COLUMN
    )
    np.testing.assert_array_equal(arrays.y_test, centres["va"].y_test)
    np.testing.assert_allclose(arrays.x_train, centres["va"].x_train)


@needs_data
def test_validation_folds_never_touch_test_rows(centres):
    for fold in validation_folds(centres=centres, folds=2):
        for name, c in fold.items():
            train_rows = {tuple(r) + (y,) for r, y in zip(centres[name].x_train, centres[name].y_train, strict=False)}
            assert len(c.y_train) + len(c.y_test) == len(centres[name].y_train)
            # every validation row is one of the centre's training rows
            assert all(tuple(r) + (y,) in train_rows for r, y in zip(c.x_test, c.y_test, strict=False))


def test_absent_folder_is_said_clearly(tmp_path):
    with pytest.raises(HeartDataMissing, match=r"not found in .*--data FOLDER"):
        load_centres(folder=tmp_path / "nowhere")

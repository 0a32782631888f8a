"""The four UCI Heart Disease hospitals as four sites."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datasets_synthetic import UCI_HEART_DISEASE_DICTIONARY, load_uci_heart_disease, write_uci_sites
from federation.data.errors import DataValidationError
from federation.data.loader import load_sites


def test_dictionary_keeps_outcome_columns_out_of_the_features():
    d = UCI_HEART_DISEASE_DICTIONARY
    assert d.target == "heart_disease"
    assert "num" not in d.feature_columns and "heart_disease" not in d.feature_columns
    assert len(d.feature_columns) == 13
    assert d.column("chol").out_of_range == "missing" and d.column("trestbps").out_of_range == "missing"


def test_the_four_files_load_as_four_sites(real_uci_folder):
    sites = load_uci_heart_disease(folder=real_uci_folder)
    assert {name: len(site.frame) for name, site in sites.items()} == {
        "cleveland": 303,
        "hungarian": 294,
        "switzerland": 123,
        "va": 200,
    }
    for site in sites.values():
        frame = site.frame
        assert (frame["heart_disease"] == (frame["num"] > 0).astype(int)).all()
        assert site.path.name == f"processed.{site.site_id}.data"
    assert 0.36 <= sites["hungarian"].frame["heart_disease"].mean() <= 0.38
    assert 0.93 <= sites["switzerland"].frame["heart_disease"].mean() <= 0.98


def test_zero_cholesterol_means_unmeasured_and_becomes_missing(real_uci_folder):
    sites = load_uci_heart_disease(folder=real_uci_folder)
    swiss = sites["switzerland"]
    assert swiss.frame["chol"].isna().all()  # every Swiss chol is 0 in the file
    assert "column 'chol': 123 value(s) outside [100, 650] treated as missing" in swiss.warnings[0]
    assert sites["cleveland"].warnings == ()
    assert np.isnan(sites["hungarian"].frame["chol"]).sum() == 23 + 1  # 23 '?' plus one value below 100


def test_converted_folder_loads_back_identically(real_uci_folder, tmp_path):
    original = load_uci_heart_disease(folder=real_uci_folder)
    out = write_uci_sites(folder=real_uci_folder, out=tmp_path / "uci")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "cleveland.csv",
        "data_dictionary.json",
        "hungarian.csv",
        "switzerland.csv",
        "va.csv",
    ]
    assert (out / "cleveland.csv").read_text().splitlines()[0] == ",".join(UCI_HEART_DISEASE_DICTIONARY.column_names)
    loaded = load_sites(folder=out)
    for name, site in original.items():
        pd.testing.assert_frame_equal(loaded[name].frame, site.frame)


def _fake_uci_folder(tmp_path, *, va_lines):
    good = "63,1,1,145,233,1,2,150,0,2.3,3,0,6,0"
    for site in ("cleveland", "hungarian", "switzerland"):
        (tmp_path / f"processed.{site}.data").write_text(good + "\n")
    (tmp_path / "processed.va.data").write_text("\n".join(va_lines) + "\n")
    return tmp_path


def test_bad_lines_in_a_headerless_file_are_named_by_line(tmp_path):
    good = "63,1,1,145,233,1,2,150,0,2.3,3,0,6,0"
    folder = _fake_uci_folder(tmp_path, va_lines=[good, "sixty,1,1,145,233,1,2,150,0,2.3,3,0,6,0"])
    with pytest.raises(
        DataValidationError,
        match=r"^processed\.va\.data, row 2, column 'age': 'sixty' is not a number; .* no header, so row 2 is line 2",
    ):
        load_uci_heart_disease(folder=folder)
    _fake_uci_folder(tmp_path, va_lines=[good, good, "63,1,1,145"])
    with pytest.raises(
        DataValidationError, match=r"^processed\.va\.data, row 3: the row has 4 comma-separated fields, expected 14"
    ):
        load_uci_heart_disease(folder=folder)
    _fake_uci_folder(tmp_path, va_lines=[good, "63,1,1,145,233,1,2,150,0,2.3,3,0,6,?"])
    with pytest.raises(DataValidationError, match=r"^processed\.va\.data, row 2, column 'num': value is missing"):
        load_uci_heart_disease(folder=folder)


def test_an_absent_folder_says_what_should_be_there(tmp_path):
    with pytest.raises(
        DataValidationError, match=r"UCI Heart Disease folder not found; it should hold processed\.cleveland\.data"
    ):
        load_uci_heart_disease(folder=tmp_path / "absent")

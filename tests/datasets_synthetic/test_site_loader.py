"""Loading per-site files: typed results, and every rejection names file, row and column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from federation.data.errors import DataDictionaryError, DataValidationError
from federation.data.loader import load_site, load_site_data, load_sites
from federation.data.unranged import infer_schema_without_ranges


def test_a_good_csv_loads_with_dictionary_types(tiny_dictionary, tiny_rows, make_csv, tmp_path):
    frame = load_site(path=make_csv(tmp_path / "site_a.csv", rows=tiny_rows), dictionary=tiny_dictionary)
    assert list(frame.columns) == list(tiny_dictionary.column_names)
    assert frame["age"].dtype == np.float64 and frame["age"].tolist() == [63.0, 67.0, 41.5, 55.0]
    assert frame["sex"].dtype == np.int64 and frame["visits"].dtype == np.int64
    # '?', 'NA' and 'NaN' are all missing markers
    assert frame["chol"].dtype == np.float64 and frame["chol"].isna().tolist() == [False, True, True, True]
    assert list(frame["ward"].cat.categories) == ["a", "b"]
    # whole-number categories: '2.0' is category 2, an empty cell is missing
    assert list(frame["cp"].cat.categories) == [1, 2, 3, 4]
    assert frame["cp"].tolist()[:2] == [1, 4] and pd.isna(frame["cp"][2]) and frame["cp"][3] == 2


def test_text_in_a_numeric_column_names_file_row_and_column(tiny_dictionary, tiny_rows, make_csv, edit_cell, tmp_path):
    path = make_csv(tmp_path / "hospital_02.csv", rows=edit_cell(tiny_rows, row=3, column="age", value="forty"))
    with pytest.raises(
        DataValidationError,
        match=r"^hospital_02\.csv, row 3, column 'age': 'forty' is not a number; .* row 3 is line 4 of the file",
    ) as caught:
        load_site(path=path, dictionary=tiny_dictionary)
    assert (caught.value.file, caught.value.row, caught.value.column) == (path, 3, "age")


def test_a_missing_required_column_lists_what_is_there(tiny_dictionary, make_csv, tmp_path):
    path = make_csv(tmp_path / "a.csv", header="age,sbp", rows=["63,145"])
    with pytest.raises(
        DataValidationError,
        match=r"a\.csv: missing required column\(s\) 'sex', 'chol', .*; the file has column\(s\) 'age', 'sbp'",
    ) as caught:
        load_site(path=path, dictionary=tiny_dictionary)
    assert caught.value.column == "sex" and caught.value.row is None


def test_an_extra_column_is_ignored_with_a_warning(tiny_dictionary, tiny_header, tiny_rows, make_csv, tmp_path):
    path = make_csv(tmp_path / "a.csv", header=tiny_header + ",note", rows=[r + ",x" for r in tiny_rows])
    site = load_site_data(path=path, dictionary=tiny_dictionary)
    assert "note" not in site.frame.columns
    assert site.warnings == ("column(s) 'note' are not in data dictionary 'tiny' and were ignored",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"a\.csv: the file is empty"),
        ("\n\n", r"a\.csv: the file is empty"),
        ("age,sex,sbp,chol,ward,cp,visits,outcome\n", r"a\.csv: the file has no data rows"),
        ("age,sex\n1,2,3\n", r"^a\.csv, row 1: the row has 3 comma-separated fields, expected 2 \(one per column\)"),
        ("age,sex\n1,2\n\n3,4\n", r"^a\.csv, row 2: the row is blank, expected 2 .* row 2 is line 3 of the file"),
        ('age,sex\n"1,2\n', r"^a\.csv: not readable as CSV \(unexpected end of data\); check the quoting"),
        ("age,age\n1,2\n", r"a\.csv: the header names column\(s\) 'age' more than once"),
    ],
)
def test_empty_or_unreadable_csv_files_are_rejected(tiny_dictionary, tmp_path, content, message):
    path = tmp_path / "a.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataValidationError, match=message):
        load_site(path=path, dictionary=tiny_dictionary)


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (2, "ward", "c", r"row 2, column 'ward': 'c' is not one of the categories \{a, b\}"),
        (1, "cp", "5", r"row 1, column 'cp': '5' is not an allowed value \{1, 2, 3, 4\}"),
        (
            4,
            "age",
            "120",
            r"row 4, column 'age': '120' is outside the allowed range \[18, 95\] years\. "
            r"Correct the value, or change out_of_range .* 'clip' or 'missing'",
        ),
        (2, "sex", "2", r"row 2, column 'sex': '2' is not an allowed value \{0, 1\}"),
        (
            3,
            "age",
            "?",
            r"row 3, column 'age': value is missing \('\?'\), but data dictionary says column "
            r"'age' may not be missing \(missing='error'\)\. .* set missing='allowed'",
        ),
        (1, "outcome", "", r"row 1, column 'outcome': value is missing"),
        (2, "visits", "2.5", r"row 2, column 'visits': '2\.5' is not a whole number"),
        (2, "sbp", "inf", r"row 2, column 'sbp': 'inf' is not a finite number"),
    ],
)
def test_bad_values_are_named_by_row_column_and_value(
    tiny_dictionary, tiny_rows, make_csv, edit_cell, tmp_path, row, column, value, message
):
    path = make_csv(tmp_path / "site.csv", rows=edit_cell(tiny_rows, row=row, column=column, value=value))
    with pytest.raises(DataValidationError, match=r"^site\.csv, " + message) as caught:
        load_site(path=path, dictionary=tiny_dictionary)
    assert (caught.value.row, caught.value.column) == (row, column)


def test_clip_and_missing_policies_apply_silently_but_are_counted(
    tiny_dictionary, tiny_rows, make_csv, edit_cell, tmp_path
):
    rows = edit_cell(tiny_rows, row=1, column="sbp", value="250")
    rows = edit_cell(rows, row=1, column="chol", value="0")  # 0 = not measured: becomes missing
    site = load_site_data(path=make_csv(tmp_path / "a.csv", rows=rows), dictionary=tiny_dictionary)
    assert site.frame["sbp"][0] == 220.0
    assert np.isnan(site.frame["chol"][0])
    assert site.warnings == (
        "column 'sbp': 1 value(s) outside [80, 220] clipped to the range (out_of_range='clip')",
        "column 'chol': 1 value(s) outside [100, 650] treated as missing (out_of_range='missing')",
    )


def test_parquet_files_are_validated_the_same_way(tiny_dictionary, tiny_rows, make_csv, tmp_path):
    frame = load_site(path=make_csv(tmp_path / "a.csv", rows=tiny_rows), dictionary=tiny_dictionary)
    frame.to_parquet(tmp_path / "good.parquet", index=False)
    pd.testing.assert_frame_equal(load_site(path=tmp_path / "good.parquet", dictionary=tiny_dictionary), frame)
    frame.loc[2, "age"] = 140.0
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(
        DataValidationError,
        match=r"^bad\.parquet, row 3, column 'age': 140 is outside the allowed range \[18, 95\] .*\(rows are counted from 1\)$",
    ):
        load_site(path=tmp_path / "bad.parquet", dictionary=tiny_dictionary)
    frame.head(0).to_parquet(tmp_path / "empty.parquet", index=False)
    with pytest.raises(DataValidationError, match=r"^empty\.parquet: the file has no data rows"):
        load_site(path=tmp_path / "empty.parquet", dictionary=tiny_dictionary)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataValidationError, match=r"^broken\.parquet: not readable as Parquet"):
        load_site(path=tmp_path / "broken.parquet", dictionary=tiny_dictionary)


def test_a_file_that_is_not_utf8_text_is_refused(tiny_dictionary, tmp_path):
    (tmp_path / "a.csv").write_bytes("age;sexe\nâgé".encode("latin-1"))
    with pytest.raises(
        DataValidationError, match=r"^a\.csv: not readable as UTF-8 text \(byte \d+\); save the file as UTF-8"
    ):
        load_site(path=tmp_path / "a.csv", dictionary=tiny_dictionary)


def test_a_missing_file_is_named(tiny_dictionary, tmp_path):
    with pytest.raises(DataValidationError, match=r"nope\.csv: the site file does not exist"):
        load_site(path=tmp_path / "nope.csv", dictionary=tiny_dictionary)


def test_load_sites_reads_every_site_and_skips_the_rest(tiny_dictionary, tiny_rows, make_csv, tmp_path):
    make_csv(tmp_path / "site_b.csv", rows=tiny_rows)
    make_csv(tmp_path / "site_a.csv", rows=tiny_rows[:2])
    tiny_dictionary.save(tmp_path / "data_dictionary.json")
    for ignored in ("README.md", "ground_truth.json", ".hidden.csv", "notes.txt"):
        (tmp_path / ignored).write_text("not a site", encoding="utf-8")
    sites = load_sites(folder=tmp_path)
    assert list(sites) == ["site_a", "site_b"]
    assert (sites["site_a"].site_id, sites["site_a"].path, len(sites["site_a"].frame)) == (
        "site_a",
        tmp_path / "site_a.csv",
        2,
    )


def test_fingerprint_tracks_the_file_and_the_dictionary(tiny_dictionary, tiny_rows, make_csv, edit_cell, tmp_path):
    from dataclasses import replace

    path = make_csv(tmp_path / "a.csv", rows=tiny_rows)
    first = load_site_data(path=path, dictionary=tiny_dictionary).fingerprint
    assert load_site_data(path=path, dictionary=tiny_dictionary).fingerprint == first
    assert len(first) == 64
    renamed = replace(tiny_dictionary, name="tiny_v2")
    assert load_site_data(path=path, dictionary=renamed).fingerprint != first
    make_csv(path, rows=edit_cell(tiny_rows, row=1, column="age", value="64"))
    assert load_site_data(path=path, dictionary=tiny_dictionary).fingerprint != first


def test_two_files_for_one_site_are_refused(tiny_dictionary, tiny_rows, make_csv, tmp_path):
    make_csv(tmp_path / "a.csv", rows=tiny_rows)
    load_site(path=tmp_path / "a.csv", dictionary=tiny_dictionary).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(
        DataValidationError, match=r"two files for site 'a' \(a\.csv and a\.parquet\); keep exactly one"
    ):
        load_sites(folder=tmp_path, dictionary=tiny_dictionary)


def test_a_folder_without_site_files_says_what_it_holds(tiny_dictionary, tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(
        DataValidationError, match=r"no site files \(\.csv or \.parquet\) in this folder \(it holds: notes\.txt\)"
    ):
        load_sites(folder=tmp_path, dictionary=tiny_dictionary)
    with pytest.raises(DataValidationError, match=r"the site folder does not exist"):
        load_sites(folder=tmp_path / "absent", dictionary=tiny_dictionary)


def test_without_a_dictionary_the_error_says_where_ranges_must_come_from(tiny_rows, make_csv, tmp_path):
    make_csv(tmp_path / "a.csv", rows=tiny_rows)
    with pytest.raises(
        DataDictionaryError,
        match=r"no data_dictionary\.json here .* public knowledge .* or from a DP range query .* never read from the data",
    ):
        load_sites(folder=tmp_path)


def test_unranged_schema_gives_kinds_only_and_is_completed_from_outside(tiny_rows, make_csv, tmp_path):
    schema = infer_schema_without_ranges(path=make_csv(tmp_path / "a.csv", rows=tiny_rows))
    assert schema.kinds == {
        "age": "numeric",
        "sex": "numeric",
        "sbp": "numeric",
        "chol": "numeric",
        "ward": "categorical",
        "cp": "numeric",
        "visits": "numeric",
        "outcome": "numeric",
    }
    assert not hasattr(schema, "to_json")  # it is not a DataDictionary and carries no ranges
    with pytest.raises(DataDictionaryError, match=r"no range or category list for column\(s\) 'sex', 'sbp'"):
        schema.complete(name="d", source="DP range query", ranges={"age": (18, 95)}, categories={})
    ranges = {name: (0, 700) for name, kind in schema.kinds.items() if kind == "numeric"}
    dictionary = schema.complete(
        name="d", source="DP range query", ranges=ranges, categories={"ward": ("a", "b")}, target="outcome"
    )
    assert dictionary.target == "outcome" and dictionary.column("age").out_of_range == "clip"
    assert len(load_site(path=tmp_path / "a.csv", dictionary=dictionary)) == 4
    with pytest.raises(DataValidationError, match=r"pass one site file"):
        infer_schema_without_ranges(path=tmp_path)
